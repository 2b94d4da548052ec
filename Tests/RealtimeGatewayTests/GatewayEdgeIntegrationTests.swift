import AMQPClient
import Contracts
import Foundation
import RealtimeGateway
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A WebSocket upgrade request on a raw socket: the answer's status and text (head, and the body of a
/// refusal). The socket stays open on a 101 (returned for the caller to close), closed otherwise.
func rawUpgrade(
    port: Int,
    origin: String?,
    path: String = "/?showtimeId=s1"
) throws -> (
    status: Int, text: String, socket: Int32?
) {
    let socket = try HTTPTestClient.open(port: port, timeout: .seconds(15))
    var request =
        "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    if let origin { request += "Origin: \(origin)\r\n" }
    request += "\r\n"
    try HTTPTestClient.send(socket, Array(request.utf8))
    var received: [UInt8] = []
    var byte: UInt8 = 0
    while !received.ends(with: Array("\r\n\r\n".utf8)) {
        guard read(socket, &byte, 1) == 1 else { break }
        received.append(byte)
    }
    let head = String(decoding: received, as: UTF8.self)
    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    if status == 101 { return (status, head, socket) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(socket, &buffer, buffer.count)
        guard count > 0 else { break }
        received += buffer[0..<count]
    }
    close(socket)
    return (status, String(decoding: received, as: UTF8.self), nil)
}

/// A WebSocket client on two threads of its own (blocking sockets, nothing on Swift's cooperative pool,
/// which the gateway under test shares): one sends what it is given, one reads every message the
/// gateway sends as fast as the socket gives it, and keeps the text ones.
final class RawWebSocket: Sendable {
    let socket: Int32
    private let received = Mutex<[String]>([])
    private let ended = Atomic<Bool>(false)
    /// The close code the gateway sent (0 before, or if it closed without one).
    private let closeCode = Atomic<Int>(0)
    /// Set by the first `close()`; the descriptor is closed once, by it, after the reader has stopped.
    private let closing = Atomic<Bool>(false)
    /// Signalled when the reader thread has returned (it never touches the socket after that).
    private let readerDone = DispatchSemaphore(value: 0)

    init(port: Int) throws {
        let answer = try rawUpgrade(port: port, origin: nil, path: "/")
        guard answer.status == 101, let socket = answer.socket else {
            throw TestFailure("upgrade refused: \(answer.text)")
        }
        self.socket = socket
        Thread { [self] in
            readLoop()
            // The connection ended (or the gateway sent its close frame): end ours too, as a client's
            // close would, so the gateway is not left waiting for it. Shut down, not closed: the descriptor
            // stays ours until close(), so nothing else can have its number yet.
            shutdown(socket, Int32(SHUT_RDWR))
            readerDone.signal()
        }.start()
    }

    var messages: [String] { received.withLock { $0 } }
    var isClosed: Bool { ended.load(ordering: .sequentiallyConsistent) }
    var receivedCloseCode: Int { closeCode.load(ordering: .sequentiallyConsistent) }

    /// Sends each text as one masked frame.
    func send(_ texts: [String]) throws {
        guard !closing.load(ordering: .sequentiallyConsistent) else { throw TestFailure("closed") }
        try HTTPTestClient.send(socket, Self.frames(texts))
    }

    /// Each text as one masked frame (the all-zero mask: allowed, and the payload stays as it is).
    static func frames(_ texts: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for text in texts {
            let payload = Array(text.utf8)
            bytes.append(0x81)
            if payload.count < 126 {
                bytes.append(0x80 | UInt8(payload.count))
            } else {
                bytes += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
            }
            bytes += [0, 0, 0, 0] + payload
        }
        return bytes
    }

    /// Shuts the socket down (the reader sees the end), waits for the reader to stop, then closes the
    /// descriptor, once. Only here: a descriptor closed by the reader while the test still sent on it, or
    /// shut down again later, once hit whatever socket of another test had reused its number (an HTTP
    /// client elsewhere in the process saw its connection end with no answer).
    func close() {
        guard !closing.exchange(true, ordering: .sequentiallyConsistent) else { return }
        shutdown(socket, Int32(SHUT_RDWR))
        _ = readerDone.wait(timeout: .now() + 30)
        Glibc.close(socket)
    }

    private func readLoop() {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var message: [UInt8] = []
        func need(_ count: Int) -> Bool {
            while buffer.count < count {
                let got = read(socket, &chunk, chunk.count)
                if got <= 0 { return false }
                buffer += chunk[0..<got]
            }
            return true
        }
        while need(2) {
            let opcode = buffer[0] & 0x0f
            let fin = buffer[0] & 0x80 != 0
            var length = Int(buffer[1] & 0x7f)
            var header = 2
            if length == 126 {
                guard need(4) else { break }
                length = Int(buffer[2]) << 8 | Int(buffer[3])
                header = 4
            } else if length == 127 {
                guard need(10) else { break }
                length = (2..<10).reduce(0) { $0 << 8 | Int(buffer[$1]) }
                header = 10
            }
            guard need(header + length) else { break }
            let payload = Array(buffer[header..<(header + length)])
            buffer.removeFirst(header + length)
            switch opcode {
            case 0x1, 0x0:
                message += payload
                if fin {
                    let text = String(decoding: message, as: UTF8.self)
                    received.withLock { $0.append(text) }
                    message = []
                }
            case 0x9:  // ping: answer with a masked pong carrying the same payload
                var pong: [UInt8] = [0x8a, 0x80 | UInt8(payload.count), 0, 0, 0, 0]
                pong += payload
                try? HTTPTestClient.send(socket, pong)
            case 0x8:
                if payload.count >= 2 {
                    closeCode.store(Int(payload[0]) << 8 | Int(payload[1]), ordering: .sequentiallyConsistent)
                }
                ended.store(true, ordering: .sequentiallyConsistent)
                return
            default:
                break
            }
        }
        ended.store(true, ordering: .sequentiallyConsistent)
    }
}

/// The type of a gateway message.
func messageType(_ text: String) -> String {
    ((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any])?["type"] as? String ?? "?"
}

/// The sum of `inventory_rpc_requests_total` for `operation` in a Prometheus text.
func requestCount(_ metrics: String, operation: String) -> Int {
    metrics.split(separator: "\n")
        .filter { $0.hasPrefix("inventory_rpc_requests_total{") && $0.contains("operation=\"\(operation)\"") }
        .compactMap { line in line.split(separator: " ").last.flatMap { Double($0) } }
        .reduce(0) { $0 + Int($1) }
}

extension RealServices {
    @Suite("Realtime gateway edge, against the real broker", .serialized)
    struct GatewayEdgeIntegrationTests {
        @Test("a cross-origin upgrade is refused 403 with the contract's body; allowed origins and none pass")
        func origins() async throws {
            try await withGateway(seatMaps: ["s1": ["A1"]]) { gateway, _ in
                let evil = try await blocking { try rawUpgrade(port: gateway.port, origin: "http://evil.example") }
                #expect(evil.status == 403, "\(evil.text)")
                #expect(evil.text.contains(#""code":"FORBIDDEN""#), "\(evil.text)")
                #expect(evil.text.lowercased().contains("content-type: application/json"), "\(evil.text)")
                let null = try await blocking { try rawUpgrade(port: gateway.port, origin: "null") }
                #expect(null.status == 403)
                for origin in ["http://localhost:3000", "http://localhost:3005", nil] {
                    let answer = try await blocking { try rawUpgrade(port: gateway.port, origin: origin) }
                    #expect(answer.status == 101, "\(origin ?? "no Origin"): \(answer.text)")
                    if let socket = answer.socket { close(socket) }
                }
                // A plain HTTP request needs no Origin check: a health probe from anywhere.
                let health = try await blocking { try HTTPTestClient.request(port: gateway.port, "GET", "/healthz") }
                #expect(health.status == 200)
                #expect(gateway.gateway.metrics.snapshot().connectionsRefused == 2)
            }
        }

        @Test("connections over the per-address limit are answered 503 and closed; a closed one frees its place")
        func addressLimit() async throws {
            let configure: (inout GatewayConfiguration) -> Void = { $0.maxConnectionsPerAddress = 3 }
            try await withGateway(seatMaps: ["s1": ["A1"]], configure: configure) {
                gateway,
                _ in
                var open: [Int32] = []
                defer { for socket in open { close(socket) } }
                for _ in 0..<3 {
                    let answer = try await blocking { try rawUpgrade(port: gateway.port, origin: nil) }
                    #expect(answer.status == 101)
                    if let socket = answer.socket { open.append(socket) }
                }
                let fourth = try await blocking { try rawUpgrade(port: gateway.port, origin: nil) }
                #expect(fourth.status == 503, "\(fourth.text)")
                #expect(fourth.text.contains(#""code":"SERVICE_UNAVAILABLE""#), "\(fourth.text)")
                #expect(fourth.text.lowercased().contains("retry-after: 5"), "\(fourth.text)")
                close(open.removeFirst())
                // The place is given back when the gateway sees the close: a bounded wait for it.
                var again = 0
                try await eventuallyAsync("a place is free again", timeout: .seconds(10)) {
                    let answer = try? await blocking { try rawUpgrade(port: gateway.port, origin: nil) }
                    if let socket = answer?.socket { open.append(socket) }
                    again = answer?.status ?? 0
                    return again == 101
                }
            }
        }

        @Test("a client that sends more messages than its budget is disconnected with 1008 (policy violation)")
        func messageRate() async throws {
            try await withGateway(seatMaps: ["s1": ["A1"]]) { gateway, _ in
                let client = try await blocking { try RawWebSocket(port: gateway.port) }
                defer { client.close() }
                // Within the burst (64 by default): all answered.
                try await blocking { try client.send(Array(repeating: #"{"type":"ping"}"#, count: 60)) }
                try await eventually("60 pongs") { client.messages.filter { $0.contains("pong") }.count == 60 }
                #expect(!client.isClosed)
                // Then a flood, far over 20 a second.
                try await blocking { try? client.send(Array(repeating: #"{"type":"ping"}"#, count: 500)) }
                try await eventually("the flooder disconnected") { client.isClosed }
                #expect(client.receivedCloseCode == 1008)
                #expect(client.messages.filter { $0.contains("pong") }.count < 60 + 500)
                #expect(gateway.gateway.metrics.snapshot().clientsDroppedMessageRate == 1)
            }
        }

        @Test("a connection that never finishes its request head is closed at the handshake timeout")
        func handshakeTimeout() async throws {
            let configure: (inout GatewayConfiguration) -> Void = { $0.handshakeTimeout = .seconds(1) }
            try await withGateway(seatMaps: ["s1": ["A1"]], configure: configure) {
                gateway,
                _ in
                let closed = try await blocking { () -> Bool in
                    let socket = try HTTPTestClient.open(port: gateway.port, timeout: .seconds(15))
                    defer { close(socket) }
                    try HTTPTestClient.send(socket, Array("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a".utf8))
                    var byte: UInt8 = 0
                    // EOF (0) once the gateway closes; -1 only if the 15 s receive timeout passes first.
                    return read(socket, &byte, 1) == 0
                }
                #expect(closed)
                try await gateway.waitUntil("the timeout counted") {
                    gateway.gateway.metrics.snapshot().connections == 0
                }
            }
        }

        @Test(
            "10,000 subscribe frames to one showtime on one connection cost the core a handful of availability requests, and the snapshots stay right"
        )
        func subscribeFlood() async throws {
            try await Self.withCore(prefix: "gateway_flood") { vhost, gatewayURL, opsPort in
                try await Self.flood(vhost: vhost, gatewayURL: gatewayURL, opsPort: opsPort)
            }
        }

        @Test(
            "the issue's flood tried again: a client that sends 50 subscribe frames a second for a 10,000-seat showtime and never reads; others still get their snapshots"
        )
        func slowFloodOfALargeShowtime() async throws {
            try await Self.withCore(prefix: "gateway_large") { vhost, gatewayURL, opsPort in
                try await Self.largeShowtimeFlood(vhost: vhost, gatewayURL: gatewayURL, opsPort: opsPort)
            }
        }

        /// `inventory-rpc serve` (its ops port free, its database and vhost scratch, the core's and the
        /// gateway's broker users of their own) around `body(vhost, the gateway's broker URL, the ops port)`.
        static func withCore(
            prefix: String,
            _ body: @escaping (String, String, Int) async throws -> Void
        ) async throws {
            _ = try #require(try? Products.path("inventory-rpc"), "build the inventory-rpc product first")
            let database = ScratchDatabase(prefix: prefix)
            try await blocking { try database.create() }
            do {
                try await withScratchVhost(prefix: "test-gw") { scratch in
                    let vhost = scratch.name
                    let users = try await blocking {
                        try TestBrokerUsers.create(vhost: vhost, services: [.core, .gateway])
                    }
                    defer { users.delete() }
                    let opsPort = try freePort()
                    let environment = [
                        "DATABASE_URL": database.url, "RABBITMQ_URL": users.url(.core), "OPS_PORT": "\(opsPort)",
                        "WORKERS": "2", "LOG_LEVEL": "warning", "RPC_PERMISSIONS": "\(users.permissions)",
                    ]
                    let migrate = try await blocking {
                        try runProcess(try Products.path("inventory-rpc"), ["migrate"], environment: environment)
                    }
                    #expect(migrate.status == 0)
                    let core = try ServerProcess(product: "inventory-rpc", ["serve"], environment: environment)
                    do {
                        try await body(vhost, users.url(.gateway), opsPort)
                        try await blocking { core.stop(timeout: .seconds(15)) }
                    } catch {
                        try? await blocking { core.stop(timeout: .seconds(15)) }
                        throw error
                    }
                }
                try await blocking { database.drop() }
            } catch {
                try? await blocking { database.drop() }
                throw error
            }
        }

        static func largeShowtimeFlood(vhost: String, gatewayURL: String, opsPort: Int) async throws {
            let rpc = try RPCTestClient(
                url: RabbitMQ.url(vhost: vhost),
                connectionName: "gateway-tests rpc",
                declaresExchange: true,
                logger: quietLogger
            )
            defer { rpc.close() }
            try await eventuallyAsync("the core answers ping", timeout: .seconds(30)) {
                (try? await rpc.call(.ping, PingRequest(), timeout: .milliseconds(500))) != nil
            }
            let showtime = "large-\(UUID().uuidString.prefix(8))"
            _ = try await rpc.ok(
                SeatsDefined.self,
                .seatsDefine,
                SeatsDefineRequest(showtimeId: showtime, seatIds: (1...10_000).map { "S\($0)" })
            )
            func availabilityRequests() throws -> Int {
                requestCount(
                    try HTTPTestClient.request(port: opsPort, "GET", "/metrics").text,
                    operation: RPCOperation.availability.routingKey
                )
            }
            let gateway = try await RunningGateway.start(vhost: vhost) { $0.rabbitMQURL = gatewayURL }
            do {
                let before = try availabilityRequests()
                // The flooder: upgraded on a raw socket that it never reads again.
                let flooder = try await blocking { try rawUpgrade(port: gateway.port, origin: nil, path: "/") }
                let socket = try #require(flooder.socket)
                let frame = RawWebSocket.frames([#"{"type":"subscribe","showtimeId":"\#(showtime)"}"#])
                // 50 frames a second for 5 s, as the issue's client sent them (a load shape, not a wait),
                // while other clients subscribe one after the other and a hold is made now and then.
                let flood = Task {
                    for _ in 0..<250 {
                        guard (try? HTTPTestClient.send(socket, frame)) != nil else { return }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                var waits: [Duration] = []
                var holds: [Duration] = []
                do {
                    for index in 0..<8 {
                        let clock = ContinuousClock()
                        let started = clock.now
                        let client = try await TestClient.connect(
                            "probe-\(index)",
                            url: gateway.url + "?showtimeId=\(showtime)"
                        )
                        try await client.next(timeout: .seconds(30), "snapshot") { $0.type == "snapshot" }
                        waits.append(started.duration(to: clock.now))
                        await client.close()
                        let holdStarted = clock.now
                        _ = try await rpc.ok(
                            Hold.self,
                            .hold,
                            HoldRequest(showtimeId: showtime, seatIds: ["S\(index + 1)"], userId: "u\(index)")
                        )
                        holds.append(holdStarted.duration(to: clock.now))
                    }
                } catch {
                    // The flood stops before its socket is closed (a descriptor closed under a sender is
                    // reused by other tests' sockets in this process).
                    flood.cancel()
                    _ = try? await flood.value
                    close(socket)
                    throw error
                }
                try await flood.value
                close(socket)
                let after = try availabilityRequests()
                print(
                    "REPORT large-showtime flood: 250 subscribe frames at 50/s for 10,000 seats, never read -> "
                        + "\(after - before) availability requests at the core; other clients' first snapshot "
                        + "p50 \(ms(percentile(waits, 0.5))) ms max \(ms(waits.max()!)) ms; a hold meanwhile "
                        + "p50 \(ms(percentile(holds, 0.5))) ms max \(ms(holds.max()!)) ms; "
                        + "\(gateway.gateway.metrics.snapshot())"
                )
                // The probes' own subscriptions count too: one request each at most, most of them shared.
                #expect(after - before <= 15, "a handful, not one per frame")
                try await gateway.stop()
            } catch {
                try? await gateway.stop()
                throw error
            }
        }

        static func flood(vhost: String, gatewayURL: String, opsPort: Int) async throws {
            let rpc = try RPCTestClient(
                url: RabbitMQ.url(vhost: vhost),
                connectionName: "gateway-tests rpc",
                declaresExchange: true,
                logger: quietLogger
            )
            defer { rpc.close() }
            try await eventuallyAsync("the core answers ping", timeout: .seconds(30)) {
                (try? await rpc.call(.ping, PingRequest(), timeout: .milliseconds(500))) != nil
            }
            let showtime = "flood-\(UUID().uuidString.prefix(8))"
            let seats = (1...20).map { "A\($0)" }
            _ = try await rpc.ok(
                SeatsDefined.self,
                .seatsDefine,
                SeatsDefineRequest(showtimeId: showtime, seatIds: seats)
            )
            func availabilityRequests() throws -> Int {
                requestCount(
                    try HTTPTestClient.request(port: opsPort, "GET", "/metrics").text,
                    operation: RPCOperation.availability.routingKey
                )
            }

            let gateway = try await RunningGateway.start(vhost: vhost) {
                $0.rabbitMQURL = gatewayURL
                // The flooding client reads everything it is sent (per frame answered from the reuse, the
                // snapshot and the events since it): a queue that holds them all, so that it is not dropped
                // for reading slower than the frames arrive (what a real flooder that does not read gets).
                $0.clientBufferSize = 200_000
                // Out of the way here: this test shows what the frames cost the core when they are let
                // through (the budget alone would disconnect the flooder after 64 of them).
                $0.maxMessagesPerSecond = 1_000_000
            }
            do {
                let before = try availabilityRequests()
                let client = try await blocking { try RawWebSocket(port: gateway.port) }
                defer { client.close() }
                let frames = 10_000
                let subscribe = #"{"type":"subscribe","showtimeId":"\#(showtime)"}"#
                // Seats change while the frames arrive: holds and releases through the core.
                let changes = Task {
                    var holds: [Hold] = []
                    for index in 0..<10 {
                        let (hold, _) = try await rpc.ok(
                            Hold.self,
                            .hold,
                            HoldRequest(
                                showtimeId: showtime,
                                seatIds: ["A\(index + 1)", "A\(index + 11)"],
                                userId: "u\(index)"
                            )
                        )
                        holds.append(hold)
                        if index % 3 == 2 {
                            _ = try await rpc.ok(
                                Hold.self,
                                .release,
                                ReleaseRequest(holdId: holds.removeFirst().holdId)
                            )
                        }
                    }
                }
                let started = ContinuousClock.now
                try await blocking {
                    for _ in 0..<(frames / 100) { try client.send(Array(repeating: subscribe, count: 100)) }
                }
                try await changes.value
                let metrics = gateway.gateway.metrics
                do {
                    try await gateway.waitUntil("every frame handled", timeout: .seconds(120)) {
                        let state = metrics.snapshot()
                        return state.snapshotRequests + state.snapshotsShared == frames
                    }
                } catch {
                    throw TestFailure(
                        "\(error): \(metrics.snapshot()); client closed: \(client.isClosed), "
                            + "\(client.messages.count) messages received"
                    )
                }
                let handledAfter = ContinuousClock.now - started
                // The core counts a request once it has replied: wait (bounded) until it has counted all the
                // gateway sent (every frame is handled, so no more will be).
                let sent = metrics.snapshot().snapshotRequests
                try await eventuallyAsync("the core counted the gateway's \(sent) requests", timeout: .seconds(30)) {
                    ((try? availabilityRequests()) ?? before) - before >= sent
                }
                let after = try availabilityRequests()
                let state = metrics.snapshot()
                print(
                    "REPORT subscribe-flood: \(frames) subscribe frames on one connection -> \(after - before) "
                        + "availability requests at the core (gateway: \(state.snapshotRequests) sent, "
                        + "\(state.snapshotsShared) shared), all handled \(handledAfter) after the first was sent; "
                        + "\(client.messages.count) messages received so far"
                )
                #expect(state.snapshotRequests == after - before)
                #expect(after - before <= 10, "a handful, not one per frame")
                #expect(!client.isClosed)

                // Rule 8 at the flooding client: its last snapshot, then the events after it applied per seat
                // by version, equal what availability says now.
                let (now, _) = try await rpc.ok(
                    Availability.self,
                    .availability,
                    AvailabilityRequest(showtimeId: showtime)
                )
                func matches() -> Bool {
                    let messages = client.messages
                    guard let last = messages.lastIndex(where: { messageType($0) == "snapshot" }),
                        let snapshot = try? ForwardedSnapshot.decode(messages[last])
                    else { return false }
                    var map = SeatMap(snapshot)
                    for text in messages[(last + 1)...] where text.contains(#""eventId""#) {
                        guard let event = try? ForwardedEvent.decode(text) else { return false }
                        map.apply(event)
                    }
                    return now.availability.allSatisfy { seat in
                        let derived = map.seat(seat.seatId, at: Date())
                        return derived.state == seat.state && derived.version == seat.version
                    }
                }
                try await eventually("the flooder's seat map equals availability", timeout: .seconds(60)) { matches() }
                try await gateway.stop()
            } catch {
                try? await gateway.stop()
                throw error
            }
        }
    }
}
