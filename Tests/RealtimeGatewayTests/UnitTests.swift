import Contracts
import Foundation
import ServiceSupport
import Synchronization
import Testing

@testable import RealtimeGateway

@Suite("Event de-duplication")
struct EventDeduplicatorTests {
    @Test("an event id is let through once, then refused while it is among the last `capacity` ids")
    func duplicates() {
        var deduplicator = EventDeduplicator(capacity: 3)
        // e4 pushes out e1, the oldest; e1 is then new again.
        let ids = ["e1", "e1", "e2", "e3", "e1", "e4", "e1", "e3", "e4"]
        let firsts = ids.map { deduplicator.firstSighting(of: $0) }
        #expect(firsts == [true, false, true, true, false, true, true, false, false])
        #expect(deduplicator.count == 3)
    }
}

@Suite("Client messages")
struct ClientRequestTests {
    @Test("subscribe, unsubscribe and ping parse")
    func valid() throws {
        #expect(
            try ClientRequest.parse(#"{"type":"subscribe","showtimeId":"showtime_123"}"#).get()
                == .subscribe(showtimeId: "showtime_123")
        )
        #expect(
            try ClientRequest.parse(#"{"type":"unsubscribe","showtimeId":"s:1"}"#).get()
                == .unsubscribe(showtimeId: "s:1")
        )
        #expect(try ClientRequest.parse(#"{"type":"ping"}"#).get() == .ping)
    }

    @Test(
        "each kind of bad message is a VALIDATION_FAILED naming the field",
        arguments: [
            ("not json", "$"), ("[1,2]", "$"), ("{}", "type"), (#"{"type":5}"#, "type"), (#"{"type":"dance"}"#, "type"),
            (#"{"type":"subscribe"}"#, "showtimeId"), (#"{"type":"subscribe","showtimeId":7}"#, "showtimeId"),
            (#"{"type":"subscribe","showtimeId":"has space"}"#, "showtimeId"),
            (#"{"type":"unsubscribe","showtimeId":""}"#, "showtimeId"),
        ]
    )
    func invalid(text: String, field: String) {
        guard case .failure(let error) = ClientRequest.parse(text) else {
            Issue.record("\(text) parsed")
            return
        }
        #expect(error.code == .validationFailed)
        #expect(error.details?["field"] == .string(field))
    }

    @Test("a message over 4 KiB is refused")
    func tooLong() {
        let text = #"{"type":"ping","pad":""# + String(repeating: "x", count: 5_000) + #""}"#
        guard case .failure(let error) = ClientRequest.parse(text) else {
            Issue.record("parsed")
            return
        }
        #expect(error.code == .validationFailed)
    }

    @Test("an event goes out without the user's id, the hold's id and the order's id, with its id, time and seat versions")
    func eventMessage() {
        let event = InventoryEvent(
            eventId: "e1",
            type: .seatsPurchased,
            occurredAt: Date(timeIntervalSince1970: 1_767_269_100),
            showtimeId: "s1",
            holdId: "h1",
            userId: "secret-user",
            seatIds: ["A1"],
            seatVersions: ["A1": 4],
            orderId: "o1"
        )
        let text = ServerMessage.event(event)
        #expect(
            text
                == #"{"eventId":"e1","occurredAt":"2026-01-01T12:05:00Z","seatIds":["A1"],"seatVersions":{"A1":4},"showtimeId":"s1","type":"seats.purchased"}"#
        )
        #expect(!text.contains("secret-user"))
        #expect(!text.contains("h1"))
        #expect(!text.contains("o1"))
    }
}

/// Snapshots on demand: the test decides when (and with what) each request is answered.
final class ManualAvailability: AvailabilitySource {
    typealias Completion = @Sendable (Result<Availability, ErrorBody>) -> Void
    let pending = Mutex<[(String, Completion)]>([])

    func requestAvailability(showtimeId: String, completion: @escaping Completion) {
        pending.withLock { $0.append((showtimeId, completion)) }
    }

    /// Answers the oldest request.
    func answer(_ result: ((String) -> Result<Availability, ErrorBody>)? = nil) {
        let (showtimeId, completion) = pending.withLock { $0.removeFirst() }
        completion(result?(showtimeId) ?? .success(Self.seats(showtimeId)))
    }

    var count: Int { pending.withLock { $0.count } }

    static func seats(_ showtimeId: String) -> Availability {
        Availability(
            showtimeId: showtimeId,
            availability: [SeatAvailability(seatId: "A1", state: .available)],
            summary: AvailabilitySummary(available: 1, held: 0, purchased: 0)
        )
    }
}

/// Drains a client's queue as its writer task would, without a socket.
func drain(_ client: ClientConnection) async -> [String] {
    client.finish()
    var texts: [String] = []
    for await text in client.outbound { texts.append(text) }
    return texts
}

func types(_ texts: [String]) -> [String] {
    texts.map { text in
        let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        let type = object?["type"] as? String ?? "?"
        return object?["eventId"].map { "\(type):\($0)" } ?? type
    }
}

@Suite("Fan-out hub")
struct HubTests {
    func makeHub(buffer: Int = 16, availability: ManualAvailability = ManualAvailability()) -> Hub {
        Hub(
            metrics: GatewayMetrics(),
            availability: availability,
            clientBufferSize: buffer,
            maxSubscriptionsPerClient: 2,
            logger: quietLogger
        )
    }

    @Test("the snapshot comes first; events that arrive while it is on its way follow it, in order")
    func snapshotFirst() async {
        let availability = ManualAvailability()
        let hub = makeHub(availability: availability)
        let client = hub.connect {}
        hub.subscribe(client, to: "s1")
        hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e1"))
        hub.publish(makeEvent(.holdReleased, showtimeId: "s1", eventId: "e2"))
        availability.answer()
        hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e3"))
        #expect(types(await drain(client)) == ["snapshot", "hold.created:e1", "hold.released:e2", "hold.created:e3"])
    }

    @Test("events reach only the followers of their showtime, and not after unsubscribe")
    func routing() async {
        let availability = ManualAvailability()
        let hub = makeHub(availability: availability)
        let a = hub.connect {}
        let b = hub.connect {}
        hub.subscribe(a, to: "s1")
        hub.subscribe(b, to: "s2")
        availability.answer()
        availability.answer()
        hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e1"))
        hub.publish(makeEvent(.holdCreated, showtimeId: "s2", eventId: "e2"))
        hub.unsubscribe(a, from: "s1")
        hub.publish(makeEvent(.holdReleased, showtimeId: "s1", eventId: "e3"))
        #expect(types(await drain(a)) == ["snapshot", "hold.created:e1", "unsubscribed"])
        #expect(types(await drain(b)) == ["snapshot", "hold.created:e2"])
        #expect(hub.metrics.snapshot().messagesFannedOut == 2)
    }

    @Test("a client whose queue is full is dropped and its channel closed; others still get everything")
    func slowClient() async {
        let availability = ManualAvailability()
        let hub = makeHub(buffer: 4, availability: availability)
        let closed = Atomic<Int>(0)
        let slow = hub.connect { closed.add(1, ordering: .relaxed) }
        let fast = hub.connect {}
        hub.subscribe(slow, to: "s1")
        hub.subscribe(fast, to: "s1")
        availability.answer()
        availability.answer()
        var fastTexts: [String] = []
        for index in 0..<10 {
            hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e\(index)"))
            // The fast client's writer keeps up.
            fastTexts += await take(from: fast, count: index == 0 ? 2 : 1)
        }
        #expect(closed.load(ordering: .relaxed) == 1)
        #expect(hub.metrics.snapshot().clientsDroppedBufferFull == 1)
        #expect(types(fastTexts) == ["snapshot"] + (0..<10).map { "hold.created:e\($0)" })
    }

    func take(from client: ClientConnection, count: Int) async -> [String] {
        var texts: [String] = []
        var iterator = client.outbound.makeAsyncIterator()
        while texts.count < count, let text = await iterator.next() { texts.append(text) }
        return texts
    }

    @Test("an unknown showtime ends the subscription; an unavailable core keeps it live")
    func snapshotFailures() async {
        let availability = ManualAvailability()
        let hub = makeHub(availability: availability)
        let client = hub.connect {}
        hub.subscribe(client, to: "missing")
        hub.subscribe(client, to: "s1")
        availability.answer { _ in .failure(ErrorBody(code: .showtimeNotFound, message: "no")) }
        availability.answer { _ in .failure(ErrorBody(code: .serviceUnavailable, message: "down")) }
        hub.publish(makeEvent(.holdCreated, showtimeId: "missing", eventId: "e1"))
        hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e2"))
        #expect(types(await drain(client)) == ["error", "error", "hold.created:e2"])
        #expect(hub.metrics.snapshot().subscriptions == 1)
    }

    @Test("a resync tells every subscription, then sends one fresh snapshot per showtime; a stale snapshot is ignored")
    func resync() async {
        let availability = ManualAvailability()
        let hub = makeHub(availability: availability)
        let a = hub.connect {}
        let b = hub.connect {}
        hub.subscribe(a, to: "s1")
        hub.subscribe(b, to: "s1")
        availability.answer()  // a's snapshot
        hub.resync(reason: "events-gap")  // b's first snapshot is still on its way
        #expect(availability.count == 2)
        availability.answer()  // b's stale snapshot: ignored
        hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e1"))
        availability.answer()  // the resync snapshot, for both
        #expect(types(await drain(a)) == ["snapshot", "resync", "snapshot", "hold.created:e1"])
        #expect(types(await drain(b)) == ["resync", "snapshot", "hold.created:e1"])
    }

    @Test("a connection may follow a bounded number of showtimes")
    func subscriptionLimit() async {
        let availability = ManualAvailability()
        let hub = makeHub(availability: availability)
        let client = hub.connect {}
        for showtime in ["s1", "s2", "s3"] { hub.subscribe(client, to: showtime) }
        #expect(availability.count == 2)
        #expect(types(await drain(client)) == ["error"])
    }
}

@Suite("Gateway configuration")
struct GatewayConfigurationTests {
    let service = ServiceConfiguration.defaults

    @Test("defaults: port 3011, the shared broker URL and RPC timeout")
    func defaults() async throws {
        let configuration = try await GatewayConfiguration.load(
            service: service,
            environment: [:],
            directory: "/nonexistent"
        )
        #expect(configuration.port == 3011)
        #expect(configuration.rabbitMQURL == service.rabbitMQURL)
        #expect(configuration.rpcTimeout == .milliseconds(5_000))
        #expect(configuration.clientBufferSize == 256)
    }

    @Test("the gateway's own variables are read; a bad value names its variable")
    func variables() async throws {
        let configuration = try await GatewayConfiguration.load(
            service: service,
            environment: [
                "WS_PORT": "4011", "WS_CLIENT_BUFFER": "8", "WS_PING_INTERVAL_SECONDS": "5", "WS_HOST": "127.0.0.1",
            ],
            directory: "/nonexistent"
        )
        #expect(configuration.port == 4011)
        #expect(configuration.clientBufferSize == 8)
        #expect(configuration.pingInterval == .seconds(5))
        #expect(configuration.host == "127.0.0.1")
        await #expect(throws: ConfigurationError.self) {
            _ = try await GatewayConfiguration.load(
                service: service,
                environment: ["WS_PORT": "http"],
                directory: "/nonexistent"
            )
        }
        do {
            _ = try await GatewayConfiguration.load(
                service: service,
                environment: ["WS_CLIENT_BUFFER": "0"],
                directory: "/nonexistent"
            )
        } catch {
            #expect(error.variable == "WS_CLIENT_BUFFER")
        }
    }
}
