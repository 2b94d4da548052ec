import Contracts
import Foundation
import PostgresClient
import Testing

@testable import InventoryRPC

@Suite("Storage: outbox")
struct StorageOutboxTests {
    /// The payload as a JSON object, checked against INTERFACE.md's event shape.
    private func object(_ event: OutboxEvent) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(event.payload)) as? [String: Any])
    }

    private static var rfc3339Millis: Regex<Substring> { #/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/# }

    @Test("each operation writes exactly one event with INTERFACE.md's body, in per-hold order; no event for a refusal")
    func events() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2", "A3"])
            let released = try #require(try f.created("show", ["A2", "A1"], user: "alice"))
            let sold = try #require(try f.created("show", ["A3"], user: "bob"))
            // Refusals and replays write nothing.
            _ = try f.hold("show", ["A3"], user: "carol")
            _ = try f.hold("show", ["Z9"], user: "carol")
            _ = try f.store.release(ReleaseRequest(holdId: released.holdId, userId: nil))
            _ = try f.store.release(ReleaseRequest(holdId: released.holdId, userId: nil))
            _ = try f.store.purchase(PurchaseRequest(holdId: sold.holdId, orderId: "order-7", userId: nil))
            _ = try f.store.purchase(PurchaseRequest(holdId: sold.holdId, orderId: "order-7", userId: nil))
            let dead = try #require(try f.created("show", ["A1"], user: "dave", ttl: 1))
            try f.connection.query(
                "UPDATE holds SET expires_at = now() - interval '1 second' WHERE hold_id = $1",
                [dead.holdId]
            )
            #expect(try f.store.expireDueHolds(batchSize: 10).map(\.holdID) == [dead.holdId])

            let events = try f.store.unpublishedEvents(limit: 100)
            #expect(
                events.map(\.type) == [
                    "hold.created", "hold.created", "hold.released", "seats.purchased", "hold.created", "hold.expired",
                ]
            )
            #expect(
                events.map(\.holdID) == [
                    released.holdId, sold.holdId, released.holdId, sold.holdId, dead.holdId, dead.holdId,
                ]
            )
            #expect(events.map(\.id) == events.map(\.id).sorted())
            #expect(Set(events.map(\.eventID)).count == events.count)

            for event in events {
                let body = try object(event)
                var keys: Set<String> = ["eventId", "type", "occurredAt", "showtimeId", "holdId", "userId", "seatIds"]
                if event.type == "hold.created" { keys.insert("expiresAt") }
                if event.type == "seats.purchased" { keys.insert("orderId") }
                #expect(Set(body.keys) == keys, "\(event.type)")
                #expect(body["eventId"] as? String == event.eventID && UUID(uuidString: event.eventID) != nil)
                #expect(body["type"] as? String == event.type)
                #expect(body["holdId"] as? String == event.holdID)
                #expect(body["showtimeId"] as? String == "show")
                #expect((body["occurredAt"] as? String)?.wholeMatch(of: Self.rfc3339Millis) != nil)
                // It decodes as the contract's event type too.
                let decoded = try ContractJSON.decoder().decode(InventoryEvent.self, from: Data(event.payload))
                #expect(decoded.eventId == event.eventID && decoded.type.rawValue == event.type)
            }
            let created = try object(events[0])
            #expect(created["seatIds"] as? [String] == ["A2", "A1"] && created["userId"] as? String == "alice")
            let expiresAt = try #require(created["expiresAt"] as? String)
            #expect(expiresAt.wholeMatch(of: Self.rfc3339Millis) != nil)
            // What the event says is exactly what the hold says.
            let decodedCreated = try ContractJSON.decoder().decode(InventoryEvent.self, from: Data(events[0].payload))
            #expect(decodedCreated.expiresAt == released.expiresAt)
            #expect(try object(events[3])["orderId"] as? String == "order-7")

            // Publishing: marked rows leave the queue, marking twice is harmless.
            try f.store.markPublished(ids: Array(events.prefix(4).map(\.id)))
            try f.store.markPublished(ids: [events[0].id])
            try f.store.markPublished(ids: [])
            #expect(try f.store.unpublishedEvents(limit: 100).map(\.id) == events.suffix(2).map(\.id))
            #expect(try f.store.unpublishedEvents(limit: 1).map(\.id) == [events[4].id])
        }
    }

    @Test("a write wakes LISTEN inventory_outbox after its commit; with nothing to publish, nothing is sent")
    func notify() throws {
        try withTestDatabase { url in
            let listener = try TestDatabase.connect(url)
            defer { listener.close() }
            try listener.listen(InventoryStore.outboxChannel)
            let relay = try InventoryStore(connection: listener)
            func notifications(within timeout: Duration) throws -> [PostgresNotification] {
                var received: [PostgresNotification] = []
                let deadline = ContinuousClock.now + timeout
                while received.isEmpty && ContinuousClock.now < deadline {
                    received += try listener.waitForNotifications(timeout: .milliseconds(50))
                }
                return received
            }

            let f = try StoreFixture(url)
            try f.define("show", ["A1"])
            #expect(try notifications(within: .milliseconds(300)).isEmpty)
            let hold = try #require(try f.created("show", ["A1"]))
            #expect(try notifications(within: .seconds(5)).map(\.channel) == ["inventory_outbox"])
            // Woken, the relay sees the committed event.
            let events = try relay.unpublishedEvents(limit: 10)
            #expect(events.map(\.holdID) == [hold.holdId])
            try relay.markPublished(ids: events.map(\.id))
            // A refused hold writes nothing; with nothing unpublished, nobody is woken.
            #expect(try f.hold("show", ["A1"], user: "bob").unavailableSeats == ["A1"])
            #expect(try notifications(within: .milliseconds(300)).isEmpty)
            _ = try f.store.release(ReleaseRequest(holdId: hold.holdId, userId: nil)).get()
            #expect(try notifications(within: .seconds(5)).count == 1)
        }
    }
}

@Suite("Storage: request hash")
struct StorageRequestHashTests {
    @Test("SHA-256 matches the FIPS 180-4 test vectors")
    func sha256() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        )
        #expect(
            SHA256.hex(Array(repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        )
    }

    @Test("the hash is the one already stored in databases (values pinned from the hand-written SHA-256)")
    func pinnedValues() {
        // Computed by the hand-written SHA-256 the package had before swift-crypto (and by Python's hashlib).
        #expect(
            RequestHash.of(HoldRequest(showtimeId: "show", seatIds: ["A1", "A2"], userId: "alice"))
                == "d9a3eaa2e71ab0c2ad5a592b69dc2247a327ad2bb6163b6aed822ae4dcccfb90"
        )
        #expect(
            RequestHash.of(HoldRequest(showtimeId: "showtime_123", seatIds: ["seat_1"], userId: "user-42"))
                == "ed2aab687409479fad8918f24d44a0d2f0894f57dce24ef5a9f6ff07c1d20627"
        )
        #expect(
            RequestHash.of(
                HoldRequest(showtimeId: "s\u{e9}ance-\u{1F3AC}", seatIds: ["A1", "B12", "C3"], userId: "\u{fc}")
            )
                == "9946d4e25e15167fd30ed6a5a76699c3f175d5da236fb5e2734a8c61fe6bd56c"
        )
        #expect(
            RequestHash.of(HoldRequest(showtimeId: "", seatIds: [], userId: ""))
                == "7b804097c9cc931abf1e114c02f8889766879c70d280d87a657d50df45ea293d"
        )
    }

    @Test("the hash is stable, ignores the key, and tells apart seats, order, user and showtime")
    func requestHash() {
        let base = HoldRequest(showtimeId: "show", seatIds: ["A1", "A2"], userId: "alice", idempotencyKey: "k")
        #expect(RequestHash.of(base) == RequestHash.of(base))
        #expect(
            RequestHash.of(base)
                == RequestHash.of(HoldRequest(showtimeId: "show", seatIds: ["A1", "A2"], userId: "alice"))
        )
        let others = [
            HoldRequest(showtimeId: "show", seatIds: ["A2", "A1"], userId: "alice"),
            HoldRequest(showtimeId: "show", seatIds: ["A1"], userId: "alice"),
            HoldRequest(showtimeId: "show", seatIds: ["A1A2"], userId: "alice"),
            HoldRequest(showtimeId: "show", seatIds: ["A1", "A2"], userId: "bob"),
            HoldRequest(showtimeId: "show2", seatIds: ["A1", "A2"], userId: "alice"),
        ]
        #expect(Set(others.map(RequestHash.of)).count == others.count)
        #expect(!others.map(RequestHash.of).contains(RequestHash.of(base)))
        #expect(RequestHash.of(base).count == 64)
    }
}
