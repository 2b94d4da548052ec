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

    @Test(
        "an event goes out without the user's id, the hold's id and the order's id, with its id, time and seat versions"
    )
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

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    var now: ContinuousClock.Instant { instant.withLock { $0 } }
    func advance(by duration: Duration) { instant.withLock { $0 = $0.advanced(by: duration) } }
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
    func makeHub(
        buffer: Int = 16,
        availability: ManualAvailability = ManualAvailability(),
        reuse: Duration = .seconds(1),
        maxPending: Int = 256,
        clock: ManualClock = ManualClock()
    ) -> Hub {
        Hub(
            metrics: GatewayMetrics(),
            availability: availability,
            clientBufferSize: buffer,
            maxSubscriptionsPerClient: 2,
            snapshotReuse: reuse,
            maxPendingSnapshots: maxPending,
            now: { clock.now },
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
        availability.answer()  // one request, shared by both
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
        let c = hub.connect {}
        hub.subscribe(a, to: "s1")
        availability.answer()  // a's snapshot
        hub.subscribe(b, to: "s2")
        hub.subscribe(c, to: "s1")  // within the reuse time: a's answer, no new request
        #expect(availability.count == 1)
        hub.resync(reason: "events-gap")  // b's first snapshot is still on its way
        #expect(availability.count == 3)
        availability.answer()  // b's stale snapshot: ignored
        hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e1"))
        availability.answer()  // the resync snapshots: one for a and c, one for b
        availability.answer()
        #expect(types(await drain(a)) == ["snapshot", "resync", "snapshot", "hold.created:e1"])
        #expect(types(await drain(b)) == ["resync", "snapshot"])
        #expect(types(await drain(c)) == ["snapshot", "resync", "snapshot", "hold.created:e1"])
        // After the gap nothing kept from before it is handed out: a new subscription waits for the new answer.
        #expect(hub.metrics.snapshot().snapshotRequests == 4)
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

@Suite("Shared snapshots")
struct SharedSnapshotTests {
    let hubs = HubTests()

    /// The seats as a client that applies the snapshot, then each event per seat only when its version is
    /// newer (INTERFACE.md rule 8), ends up seeing them: seatId -> (state, version).
    static func apply(_ texts: [String]) -> [String: (String, Int)] {
        var seats: [String: (String, Int)] = [:]
        for text in texts {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
                let type = object["type"] as? String
            else { continue }
            if type == "snapshot", let entries = object["availability"] as? [[String: Any]] {
                seats = [:]
                for entry in entries {
                    seats[entry["seatId"] as! String] = (entry["state"] as! String, entry["version"] as? Int ?? 0)
                }
            } else if let versions = object["seatVersions"] as? [String: Int] {
                let state = type == "hold.created" ? "held" : type == "seats.purchased" ? "purchased" : "available"
                for (seat, version) in versions where version > (seats[seat]?.1 ?? -1) {
                    seats[seat] = (state, version)
                }
            }
        }
        return seats
    }

    static func event(_ type: EventType, _ id: String, seat: String, version: Int64) -> InventoryEvent {
        InventoryEvent(
            eventId: id,
            type: type,
            occurredAt: Date(),
            showtimeId: "s1",
            holdId: "h-\(id)",
            userId: "u1",
            seatIds: [seat],
            seatVersions: [seat: version],
            expiresAt: type == .holdCreated ? Date().addingTimeInterval(300) : nil
        )
    }

    /// The core's answer as of seat A1 at `version` in `state` (A2 untouched).
    static func availability(a1 state: SeatState, version: Int64) -> Availability {
        Availability(
            showtimeId: "s1",
            availability: [
                SeatAvailability(seatId: "A1", state: state, version: version),
                SeatAvailability(seatId: "A2", state: .available, version: 0),
            ],
            summary: AvailabilitySummary(
                available: state == .available ? 2 : 1,
                held: state == .held ? 1 : 0,
                purchased: state == .purchased ? 1 : 0
            )
        )
    }

    @Test("subscriptions while a snapshot is on its way share it, and each gets the events it missed, once")
    func joinInFlight() async {
        let availability = ManualAvailability()
        let hub = hubs.makeHub(availability: availability)
        let a = hub.connect {}
        let b = hub.connect {}
        hub.subscribe(a, to: "s1")
        // The core read the seat map before this hold committed: the answer says A1 is available at 0.
        hub.publish(Self.event(.holdCreated, "e1", seat: "A1", version: 1))
        hub.subscribe(b, to: "s1")  // joins a's request: it missed e1
        hub.publish(Self.event(.holdCreated, "e2", seat: "A2", version: 1))
        #expect(availability.count == 1)
        availability.answer { _ in .success(Self.availability(a1: .available, version: 0)) }
        let textsA = await drain(a)
        let textsB = await drain(b)
        #expect(types(textsA) == ["snapshot", "hold.created:e1", "hold.created:e2"])
        #expect(types(textsB) == ["snapshot", "hold.created:e1", "hold.created:e2"])
        // What the core says now: both held at version 1.
        #expect(Self.apply(textsB)["A1"]! == ("held", 1))
        #expect(Self.apply(textsB)["A2"]! == ("held", 1))
        #expect(hub.metrics.snapshot().snapshotRequests == 1)
        #expect(hub.metrics.snapshot().snapshotsShared == 1)
    }

    @Test("an answer is reused for the reuse time with the events since its request, then asked for afresh")
    func reuse() async {
        let availability = ManualAvailability()
        let clock = ManualClock()
        let hub = hubs.makeHub(availability: availability, reuse: .milliseconds(500), clock: clock)
        let a = hub.connect {}
        hub.subscribe(a, to: "s1")
        availability.answer { _ in .success(Self.availability(a1: .available, version: 0)) }
        hub.publish(Self.event(.holdCreated, "e1", seat: "A1", version: 1))
        clock.advance(by: .milliseconds(400))
        let b = hub.connect {}
        hub.subscribe(b, to: "s1")  // the answer read before e1, and e1 after it
        #expect(availability.count == 0)
        hub.publish(Self.event(.holdCreated, "e2", seat: "A2", version: 1))
        let textsB = await drain(b)
        #expect(types(textsB) == ["snapshot", "hold.created:e1", "hold.created:e2"])
        #expect(Self.apply(textsB)["A1"]! == ("held", 1))
        #expect(Self.apply(textsB)["A2"]! == ("held", 1))
        clock.advance(by: .milliseconds(100))
        let c = hub.connect {}
        hub.subscribe(c, to: "s1")  // the reuse time is over
        #expect(availability.count == 1)
        #expect(hub.metrics.snapshot().snapshotRequests == 2)
    }

    @Test("10,000 subscribe frames to one showtime on one connection make one availability request")
    func flood() async {
        let availability = ManualAvailability()
        let clock = ManualClock()
        let hub = hubs.makeHub(buffer: 100_000, availability: availability, clock: clock)
        let client = hub.connect {}
        for _ in 0..<5_000 { hub.subscribe(client, to: "s1") }  // while the request is on its way
        #expect(availability.count == 1)
        availability.answer()
        for _ in 0..<5_000 { hub.subscribe(client, to: "s1") }  // within the reuse time
        #expect(hub.metrics.snapshot().snapshotRequests == 1)
        #expect(hub.metrics.snapshot().subscriptions == 1)
        // One snapshot for the frames that waited together, then one per frame answered from the reuse.
        #expect(types(await drain(client)) == Array(repeating: "snapshot", count: 5_001))
    }

    @Test("at most the configured number of requests are on their way; past it a subscription is told at once")
    func boundedInFlight() async {
        let availability = ManualAvailability()
        let hub = hubs.makeHub(availability: availability, maxPending: 1)
        let client = hub.connect {}
        hub.subscribe(client, to: "s1")
        hub.subscribe(client, to: "s2")
        #expect(availability.count == 1)
        hub.publish(makeEvent(.holdCreated, showtimeId: "s2", eventId: "e1"))
        let texts = await drain(client)
        #expect(types(texts) == ["error", "hold.created:e1"])
        #expect(texts[0].contains("SERVICE_UNAVAILABLE"))
        #expect(hub.metrics.snapshot().snapshotsRefused == 1)
        availability.answer()
        let again = hub.connect {}
        hub.subscribe(again, to: "s2")
        #expect(availability.count == 1)
    }

    @Test("an entry that kept as many events as a client's queue takes no new subscriptions")
    func boundedEvents() async {
        let availability = ManualAvailability()
        let hub = hubs.makeHub(buffer: 4, availability: availability)
        let a = hub.connect {}
        hub.subscribe(a, to: "s1")
        for index in 0..<4 { hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e\(index)")) }
        let b = hub.connect {}
        hub.subscribe(b, to: "s1")  // still joins: four kept
        #expect(availability.count == 1)
        hub.publish(makeEvent(.holdCreated, showtimeId: "s1", eventId: "e4"))  // the fifth: the entry stops
        let c = hub.connect {}
        hub.subscribe(c, to: "s1")
        #expect(availability.count == 2)
    }
}

@Suite("Gateway edge")
struct GatewayEdgeTests {
    @Test("origins: CORS_ORIGIN's and the facade's pass, other pages' and null do not; none, or a non-web one, passes")
    func origins() {
        let policy = OriginPolicy(origins: [
            "http://localhost:3000", "https://Tickets.Example.com/", "http://localhost:3005",
        ])
        #expect(policy.allows("http://localhost:3000"))
        #expect(policy.allows("https://tickets.example.com"))
        #expect(policy.allows("https://tickets.example.com:443"))
        #expect(policy.allows("http://localhost:3005"))
        #expect(policy.allows(nil))
        #expect(!policy.allows("http://localhost:3001"))
        #expect(!policy.allows("https://localhost:3000"))
        #expect(!policy.allows("http://evil.example"))
        #expect(!policy.allows("http://tickets.example.com.evil.example"))
        #expect(!policy.allows("null"))
        #expect(!policy.allows(""))
        #expect(!policy.allows("http://"))
        // Not a web page's origin: swift-nio's WebSocket client sends the server's ws:// URL.
        #expect(policy.allows("ws://127.0.0.1"))
        #expect(OriginPolicy(origins: ["*"]).allows("http://anything.example"))
        #expect(OriginPolicy.normalize("http://[::1]:3005") == "http://[::1]:3005")
        #expect(OriginPolicy.normalize("http://localhost:80") == "http://localhost")
        #expect(OriginPolicy.normalize("ftp://localhost") == nil)
    }

    @Test("a client's message budget: a burst, then refusals, refilled at the rate")
    func messageBudget() {
        let start = ContinuousClock.now
        var budget = MessageBudget<ContinuousClock.Instant>(rate: 10, burst: 20)
        var taken = 0
        for _ in 0..<25 where budget.take(now: start) { taken += 1 }
        #expect(taken == 20)
        // 100 ms later: one more token (10 a second), then none.
        let refilled = budget.take(now: start.advanced(by: .milliseconds(100)))
        let again = budget.take(now: start.advanced(by: .milliseconds(100)))
        #expect(refilled)
        #expect(!again)
        // A quiet client's budget fills up to the burst, no more.
        let later = start.advanced(by: .seconds(60))
        taken = 0
        for _ in 0..<25 where budget.take(now: later) { taken += 1 }
        #expect(taken == 20)
    }

    @Test("connection limits: per address and in total; a closed connection frees its place")
    func limits() {
        let limits = ConnectionLimits(maxTotal: 3, maxPerAddress: 2)
        let a1 = limits.admit(address: "10.0.0.1")
        let a2 = limits.admit(address: "10.0.0.1")
        #expect(limits.admit(address: "10.0.0.1") == .failure(.addressLimit(2)))
        let b1 = limits.admit(address: "10.0.0.2")
        #expect(limits.admit(address: "10.0.0.3") == .failure(.totalLimit(3)))
        limits.release(try! a1.get())
        #expect((try? limits.admit(address: "10.0.0.1").get()) != nil)
        limits.release(try! a2.get())
        limits.release(try! b1.get())
        #expect(limits.counts.total == 1)
        #expect(limits.counts.addresses == 1)
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
        #expect(configuration.maxConnections == 10_000)
        #expect(configuration.maxConnectionsPerAddress == 256)
        #expect(configuration.snapshotReuse == .milliseconds(1_000))
        #expect(configuration.maxPendingSnapshots == 256)
        #expect(configuration.handshakeTimeout == .seconds(10))
        #expect(configuration.maxMessagesPerSecond == 20)
        #expect(configuration.messageBurst == 64)
        #expect(
            configuration.allowedOrigins == ["http://localhost:3000", "http://localhost:3005", "http://127.0.0.1:3005"]
        )
    }

    @Test("the edge's variables are read: limits, reuse, the facade's origin; a bad origin names its variable")
    func edgeVariables() async throws {
        let configuration = try await GatewayConfiguration.load(
            service: service,
            environment: [
                "WS_MAX_CONNECTIONS": "100", "WS_MAX_CONNECTIONS_PER_ADDRESS": "5", "WS_SNAPSHOT_REUSE_MS": "0",
                "WS_MAX_PENDING_SNAPSHOTS": "8", "WS_HANDSHAKE_TIMEOUT_SECONDS": "3",
                "WS_MAX_MESSAGES_PER_SECOND": "50",
                "WS_FACADE_ORIGIN": "https://tickets.example.com", "CORS_ORIGIN": "http://localhost:3000",
            ],
            directory: "/nonexistent"
        )
        #expect(configuration.maxConnections == 100)
        #expect(configuration.maxConnectionsPerAddress == 5)
        #expect(configuration.snapshotReuse == .zero)
        #expect(configuration.maxPendingSnapshots == 8)
        #expect(configuration.handshakeTimeout == .seconds(3))
        #expect(configuration.maxMessagesPerSecond == 50)
        #expect(configuration.messageBurst == 100)
        // CORS_ORIGIN comes through the shared configuration (`service`), the facade's origin from here.
        #expect(configuration.allowedOrigins == service.corsOrigins + ["https://tickets.example.com"])
        await #expect(throws: ConfigurationError.self) {
            _ = try await GatewayConfiguration.load(
                service: service,
                environment: ["WS_FACADE_ORIGIN": "tickets.example.com"],
                directory: "/nonexistent"
            )
        }
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
