import Contracts
import Foundation
import RealtimeGateway
import ServiceSupport
import Synchronization
import TestSupport
import Testing

/// Everything that talks to the shared broker, database and core runs one test at a time, so the
/// latencies measured are the gateway's, not those of another test's 1,000 connections.
@Suite("Realtime gateway with the real services", .serialized)
struct RealServices {}

/// Against the real broker (a vhost of each test's own), through real WebSocket connections. Events are
/// published by the test itself, as the core's outbox relay would publish them; snapshots come from a
/// stand-in for the core's `availability.request` consumer. (GatewayEndToEndTests goes through the core.)
extension RealServices {
    @Suite("Realtime gateway against the broker", .serialized)
    struct GatewayIntegrationTests {
        init() { MetricsSetup.bootstrap() }

        /// Publishes `event`, then waits for each of `clients` to get it; returns publish-to-receipt times.
        static func deliver(
            _ event: InventoryEvent,
            via publisher: EventPublisher,
            to clients: [TestClient]
        ) async throws -> [Duration] {
            let sent = ContinuousClock.now
            try publisher.publish(event)
            var latencies: [Duration] = []
            for client in clients {
                let message = try await client.next("event \(event.type.rawValue)") { $0.eventId == event.eventId }
                latencies.append(sent.duration(to: message.at))
            }
            return latencies
        }

        @Test("a hold, a release, a purchase and an expiry reach exactly the clients that follow the showtime")
        func routing() async throws {
            try await withGateway(seatMaps: ["s1": ["A1", "A2", "A3"], "s2": ["B1"]]) { gateway, vhost in
                let publisher = try EventPublisher(vhost: vhost)
                // Two clients on s1 (one by the seed's query string, one by a subscribe message), one on s2.
                let a1 = try await TestClient.connect("a1", url: gateway.url + "?showtimeId=s1")
                let a2 = try await TestClient.connect("a2", url: gateway.url)
                a2.send(#"{"type":"subscribe","showtimeId":"s1"}"#)
                let b = try await TestClient.connect("b", url: gateway.url + "?showtimeId=s2")
                for client in [a1, a2, b] {
                    let snapshot = try await client.next("snapshot") { $0.type == "snapshot" }
                    #expect(snapshot.text.contains(#""summary":{"#))
                }

                var latencies: [String: [Duration]] = [:]
                let holdId = "h_route"
                for type in [EventType.holdCreated, .holdReleased, .seatsPurchased, .holdExpired] {
                    let event = makeEvent(type, showtimeId: "s1", holdId: holdId, seats: ["A1", "A2"])
                    latencies[type.rawValue] = try await Self.deliver(event, via: publisher, to: [a1, a2])
                    let other = makeEvent(type, showtimeId: "s2", seats: ["B1"])
                    latencies[type.rawValue]! += try await Self.deliver(other, via: publisher, to: [b])
                }
                // A redelivered event (same eventId) and a body that breaks the contract are not passed on.
                let duplicate = makeEvent(.holdCreated, showtimeId: "s1", eventId: "dup-1")
                try publisher.publish(duplicate)
                try publisher.publish(duplicate)
                try publisher.publish(
                    raw: Array(#"{"type":"hold.created","showtimeId":"s1"}"#.utf8),
                    routingKey: "hold.created"
                )
                let marker = makeEvent(.holdReleased, showtimeId: "s1", eventId: "marker-1")
                _ = try await Self.deliver(marker, via: publisher, to: [a1, a2])

                let expected = [
                    "hold.created", "hold.released", "seats.purchased", "hold.expired", "hold.created", "hold.released",
                ]
                for client in [a1, a2] {
                    #expect(client.events.map(\.type) == expected, "\(client.name)")
                    #expect(client.events.allSatisfy { $0.showtimeId == "s1" }, "\(client.name)")
                    #expect(client.events.filter { $0.eventId == "dup-1" }.count == 1)
                    #expect(!client.events.contains { $0.text.contains("u_1") }, "no userId goes to browsers")
                }
                #expect(b.events.map(\.type) == ["hold.created", "hold.released", "seats.purchased", "hold.expired"])
                #expect(b.events.allSatisfy { $0.showtimeId == "s2" })
                let metrics = gateway.gateway.metrics.snapshot()
                #expect(metrics.eventsDuplicate == 1)
                #expect(metrics.eventsInvalid == 1)
                #expect(metrics.connections == 3)
                #expect(metrics.subscriptions == 3)

                var report = "publish -> WebSocket receipt (ms):"
                for type in ["hold.created", "hold.released", "seats.purchased", "hold.expired"] {
                    report += " \(type) [\(latencies[type]!.map(ms).joined(separator: ", "))]"
                }
                print("REPORT routing: \(report)")
                let all = latencies.values.flatMap { $0 }
                // 100 ms is the target (the times are printed); the bound is generous for a loaded 2-core machine.
                #expect(all.allSatisfy { $0 < .seconds(10) }, "\(report)")

                for client in [a1, a2, b] { await client.close() }
            }
        }

        @Test("bad messages get an error reply and the connection carries on")
        func invalidMessages() async throws {
            try await withGateway(seatMaps: ["s1": ["A1"]]) { gateway, _ in
                let client = try await TestClient.connect("c", url: gateway.url + "?showtimeId=bad%20id")
                try await client.next("error for the query") { $0.type == "error" && $0.text.contains("showtimeId") }
                for bad in [
                    "not json", "{}", #"{"type":"dance"}"#, #"{"type":"subscribe"}"#,
                    #"{"type":"subscribe","showtimeId":"x y"}"#,
                ] {
                    let before = client.messages.count
                    client.send(bad)
                    let reply = try await client.next(after: before, "error for \(bad)") { $0.type == "error" }
                    #expect(reply.text.contains("VALIDATION_FAILED"))
                }
                client.send(#"{"type":"subscribe","showtimeId":"nope"}"#)
                try await client.next("unknown showtime") { $0.text.contains("SHOWTIME_NOT_FOUND") }
                client.send(#"{"type":"ping"}"#)
                try await client.next("pong") { $0.type == "pong" }
                client.send(#"{"type":"subscribe","showtimeId":"s1"}"#)
                try await client.next("snapshot") { $0.type == "snapshot" && $0.showtimeId == "s1" }
                client.send(#"{"type":"unsubscribe","showtimeId":"s1"}"#)
                try await client.next("unsubscribed") { $0.type == "unsubscribed" }
                #expect(!client.isClosed)
                try await gateway.waitUntil("no subscriptions left") {
                    gateway.gateway.metrics.snapshot().subscriptions == 0
                }

                let health = try httpGet(port: gateway.port, path: "/healthz")
                #expect(health.status == 200)
                #expect(health.body.contains(#""broker":"up""#))
                #expect(try httpGet(port: gateway.port, path: "/readyz").status == 200)
                let metrics = try httpGet(port: gateway.port, path: "/metrics")
                #expect(metrics.status == 200)
                #expect(metrics.body.contains("realtime_gateway_connections"))
                #expect(metrics.body.contains("realtime_gateway_messages_fanned_out_total"))
                #expect(try httpGet(port: gateway.port, path: "/nothing").status == 404)

                // Over the 16 KiB frame limit: closed (1009), not answered; the gateway carries on.
                let big = try await TestClient.connect("big", url: gateway.url)
                big.send(#"{"type":"ping","pad":""# + String(repeating: "x", count: 20_000) + #""}"#)
                try await eventually("the oversized client closed") { big.isClosed }
                client.send(#"{"type":"ping"}"#)
                let pongs = client.messages.filter { $0.type == "pong" }.count
                try await client.next("another pong") { _ in client.messages.filter { $0.type == "pong" }.count > pongs
                }

                await client.close()
            }
        }

        @Test("1,000 idle connections and a client that never reads do not delay delivery to the others")
        func slowAndIdleClients() async throws {
            let seatMaps = ["hot": ["A1"], "idle-0": [], "idle-1": [], "idle-2": [], "idle-3": []]
            let configure: (inout GatewayConfiguration) -> Void = {
                $0.clientBufferSize = 64
                $0.writeTimeout = .seconds(2)
                // All of them come from 127.0.0.1: over the default per-address limit (256), on purpose here.
                $0.maxConnectionsPerAddress = 2_000
            }
            try await withGateway(seatMaps: seatMaps, configure: configure) { gateway, vhost in
                let publisher = try EventPublisher(vhost: vhost)
                let a1 = try await TestClient.connect("a1", url: gateway.url + "?showtimeId=hot")
                let a2 = try await TestClient.connect("a2", url: gateway.url + "?showtimeId=hot")
                for client in [a1, a2] { try await client.next("snapshot") { $0.type == "snapshot" } }

                // Baseline: latency with nobody else around.
                var baseline: [Duration] = []
                for _ in 0..<20 {
                    baseline += try await Self.deliver(
                        makeEvent(.holdCreated, showtimeId: "hot"),
                        via: publisher,
                        to: [a1, a2]
                    )
                }

                let clock = ContinuousClock()
                let openStart = clock.now
                var idle: [TestClient] = []
                for batch in 0..<10 {
                    idle += try await withThrowingTaskGroup(of: TestClient.self) { group in
                        for index in 0..<100 {
                            let n = batch * 100 + index
                            group.addTask {
                                try await TestClient.connect(
                                    "idle-\(n)",
                                    url: gateway.url + "?showtimeId=idle-\(n % 4)"
                                )
                            }
                        }
                        return try await group.reduce(into: []) { $0.append($1) }
                    }
                }
                let opened = openStart.duration(to: clock.now)
                try await gateway.waitUntil("1,002 connections", timeout: .seconds(30)) {
                    gateway.gateway.metrics.snapshot().connections == 1_002
                }
                let slow = try NeverReadingClient(port: gateway.port, showtimeId: "hot")
                try await gateway.waitUntil("the slow client") {
                    gateway.gateway.metrics.snapshot().connections == 1_003
                }

                // A burst the slow client cannot take (its socket and its 64-message queue fill, or its writer stalls).
                var burst: [Duration] = []
                for index in 0..<1_000 {
                    let event = makeEvent(.holdCreated, showtimeId: "hot", seats: ["A\(index)"])
                    if index % 50 == 49 {
                        burst += try await Self.deliver(event, via: publisher, to: [a1, a2])
                    } else {
                        try publisher.publish(event)
                    }
                }
                try await gateway.waitUntil("the slow client dropped", timeout: .seconds(15)) {
                    let metrics = gateway.gateway.metrics.snapshot()
                    return metrics.clientsDroppedBufferFull + metrics.clientsDroppedWriteStalled == 1
                }
                var loaded: [Duration] = []
                for _ in 0..<20 {
                    loaded += try await Self.deliver(
                        makeEvent(.holdReleased, showtimeId: "hot"),
                        via: publisher,
                        to: [a1, a2]
                    )
                }
                #expect(a1.events.count == 20 + 1_000 + 20)
                #expect(a2.events.count == 20 + 1_000 + 20)
                #expect(idle.allSatisfy { $0.events.isEmpty && !$0.isClosed })

                let drops = gateway.gateway.metrics.snapshot()
                let report =
                    "slow client dropped (buffer full: \(drops.clientsDroppedBufferFull), write stalled: \(drops.clientsDroppedWriteStalled)); "
                    + "opened 1,000 idle connections in \(ms(opened)) ms; publish -> receipt (ms) "
                    + "baseline p50 \(ms(percentile(baseline, 0.5))) p99 \(ms(percentile(baseline, 0.99))) max \(ms(baseline.max()!)); "
                    + "during a 1,000-event burst with the slow client p50 \(ms(percentile(burst, 0.5))) max \(ms(burst.max()!)); "
                    + "after it was dropped, with 1,000 idle p50 \(ms(percentile(loaded, 0.5))) p99 \(ms(percentile(loaded, 0.99))) max \(ms(loaded.max()!))"
                print("REPORT slow-and-idle: \(report)")
                // Idle connections do not stall delivery: a stall would be the write timeout (seconds); the
                // bound is far from what a loaded machine does to a working gateway.
                #expect(percentile(loaded, 0.5) < .seconds(5), "\(report)")

                slow.close()
                for client in idle + [a1, a2] { await client.close() }
            }
        }

        @Test("a broker-side connection loss is followed by a resync, a fresh snapshot and correct delivery")
        func brokerConnectionLoss() async throws {
            try await withGateway(seatMaps: ["s1": ["A1"], "s2": ["B1"]]) { gateway, vhost in
                let publisher = try EventPublisher(vhost: vhost)
                let a = try await TestClient.connect("a", url: gateway.url + "?showtimeId=s1")
                let b = try await TestClient.connect("b", url: gateway.url + "?showtimeId=s2")
                for client in [a, b] { try await client.next("snapshot") { $0.type == "snapshot" } }
                _ = try await Self.deliver(makeEvent(.holdCreated, showtimeId: "s1"), via: publisher, to: [a])

                let before = (a.messages.count, b.messages.count)
                // rabbitmqctl takes about half a second to start: times are from before it, so upper bounds.
                let lostAt = ContinuousClock.now
                let closed = try await closeBrokerConnections(vhost: vhost, namePrefix: "realtime-gateway")
                #expect(closed == 2)
                let resync = try await a.next(after: before.0, "resync") { $0.type == "resync" }
                let snapshot = try await a.next(after: before.0, "fresh snapshot") { $0.type == "snapshot" }
                #expect(resync.at <= snapshot.at)
                try await b.next(after: before.1, "resync") { $0.type == "resync" && $0.showtimeId == "s2" }
                try await b.next(after: before.1, "fresh snapshot") { $0.type == "snapshot" }
                try await gateway.waitUntil("reconnected") { gateway.gateway.metrics.snapshot().brokerConnected }

                let after = makeEvent(.holdReleased, showtimeId: "s1")
                let latency = try await Self.deliver(after, via: publisher, to: [a])
                let other = makeEvent(.holdCreated, showtimeId: "s2")
                _ = try await Self.deliver(other, via: publisher, to: [b])
                #expect(a.events.last?.eventId == after.eventId)
                #expect(!a.events.contains { $0.eventId == other.eventId })
                #expect(gateway.gateway.metrics.snapshot().resyncs >= 1)
                print(
                    "REPORT broker-loss: resync \(ms(lostAt.duration(to: resync.at))) ms and snapshot \(ms(lostAt.duration(to: snapshot.at))) ms after rabbitmqctl close_connection started; next event \(ms(latency[0])) ms"
                )

                for client in [a, b] { await client.close() }
            }
        }
    }

}

extension RealServices {
    @Suite("Realtime gateway keep-alive and process", .serialized)
    struct GatewayProcessTests {
        init() { MetricsSetup.bootstrap() }

        @Test("a client that stops answering pings is disconnected")
        func pingTimeout() async throws {
            let configure: (inout GatewayConfiguration) -> Void = { $0.pingInterval = .seconds(1) }
            try await withGateway(seatMaps: ["s1": ["A1"]], configure: configure) { gateway, _ in
                let live = try await TestClient.connect("live", url: gateway.url + "?showtimeId=s1")
                let silent = try NeverReadingClient(port: gateway.port, showtimeId: "s1")
                defer { silent.close() }
                try await gateway.waitUntil("two connections") { gateway.gateway.metrics.snapshot().connections == 2 }
                let start = ContinuousClock.now
                // The silent client never reads, so never answers a ping: gone after one to two periods.
                try await gateway.waitUntil("the silent client dropped", timeout: .seconds(10)) {
                    gateway.gateway.metrics.snapshot().connections == 1
                }
                print(
                    "REPORT ping: a client that answers no ping was disconnected after \(ms(start.duration(to: .now))) ms (ping every 1 s)"
                )
                // The WSClient answers pings by itself: still connected after several periods.
                try await Task.sleep(for: .seconds(2.5))
                #expect(!live.isClosed)
                #expect(gateway.gateway.metrics.snapshot().connections == 1)
            }
        }

        @Test("a client whose socket stops taking data is dropped after the write timeout, even with few messages")
        func writeStall() async throws {
            // One snapshot of 10,000 seats (about 450 KB) is more than a never-reading socket takes.
            let seats = (1...10_000).map { "seat-\($0)" }
            let configure: (inout GatewayConfiguration) -> Void = { $0.writeTimeout = .seconds(1) }
            try await withGateway(seatMaps: ["big": seats], configure: configure) { gateway, _ in
                let reader = try await TestClient.connect("reader", url: gateway.url + "?showtimeId=big")
                let silent = try NeverReadingClient(port: gateway.port, showtimeId: "big")
                defer { silent.close() }
                let start = ContinuousClock.now
                try await gateway.waitUntil("the stalled client dropped", timeout: .seconds(10)) {
                    gateway.gateway.metrics.snapshot().clientsDroppedWriteStalled == 1
                }
                print(
                    "REPORT write-stall: a client stuck on a 10,000-seat snapshot was dropped after \(ms(start.duration(to: .now))) ms (timeout 1 s)"
                )
                let snapshot = try await reader.next("the big snapshot") { $0.type == "snapshot" }
                #expect(snapshot.text.contains(#""available":10000"#))
                // The drop is counted before the channel has closed: its connection goes away just after.
                try await gateway.waitUntil("the stalled client's connection closed", timeout: .seconds(10)) {
                    gateway.gateway.metrics.snapshot().connections == 1
                }
            }
        }

        @Test("the executable serves, and stops on SIGTERM with exit status 0, closing its WebSockets")
        func sigterm() async throws {
            _ = try #require(try? Products.path("realtime-gateway"), "build the realtime-gateway product first")
            try await withScratchVhost(prefix: "test-gw") { vhost in
                let process = try ServerProcess(
                    product: "realtime-gateway",
                    environment: ["WS_PORT": "0", "RABBITMQ_URL": vhost.url, "LOG_LEVEL": "warning"]
                )
                defer { process.stop() }
                let port = try await process.waitForNumber(
                    after: "Realtime gateway listening on port ",
                    timeout: .seconds(10)
                )
                let client = try await TestClient.connect("c", url: "ws://127.0.0.1:\(port)/?showtimeId=s1")
                try await eventually("broker up") { (try? httpGet(port: port, path: "/readyz").status) == 200 }

                let signalled = ContinuousClock.now
                let status = try await blocking { process.terminate(timeout: .seconds(15)) }
                let took = signalled.duration(to: .now)
                #expect(status == 0)
                #expect(took < .seconds(10))
                try await eventually("the client closed") { client.isClosed }
                print("REPORT sigterm: exit status \(status ?? -1) \(ms(took)) ms after SIGTERM")
            }
        }
    }
}
