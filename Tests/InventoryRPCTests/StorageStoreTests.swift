import Contracts
import Foundation
import PostgresClient
import Testing

@testable import InventoryRPC

@Suite("Storage: store outcomes")
struct StorageStoreTests {
    @Test("seats.define is idempotent, appends new seats after the existing ones and never changes a seat's state")
    func defineSeats() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            let first = try f.store.defineSeats(SeatsDefineRequest(showtimeId: "show", seatIds: ["B", "A", "C"]))
            #expect(first.seatCount == 3 && first.added == 3 && first.showtimeId == "show")
            let again = try f.store.defineSeats(SeatsDefineRequest(showtimeId: "show", seatIds: ["B", "A", "C"]))
            #expect(again.seatCount == 3 && again.added == 0)
            _ = try #require(try f.created("show", ["A"]))
            let more = try f.store.defineSeats(SeatsDefineRequest(showtimeId: "show", seatIds: ["D", "A", "E", "D"]))
            #expect(more.seatCount == 5 && more.added == 2)
            let availability = try f.store.availability(showtimeID: "show").get()
            #expect(availability.availability.map(\.seatId) == ["B", "A", "C", "D", "E"])
            #expect(availability.availability.map(\.state) == [.available, .held, .available, .available, .available])
            #expect(availability.summary == AvailabilitySummary(available: 4, held: 1, purchased: 0))
            // Another showtime is its own seat map.
            #expect(try f.store.defineSeats(SeatsDefineRequest(showtimeId: "other", seatIds: ["A"])).added == 1)
        }
    }

    @Test("hold: created, unavailable naming exactly the taken seats, unknown seats, showtime not found")
    func holdOutcomes() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2", "A3", "A4"])
            let hold = try #require(try f.hold("show", ["A2", "A1"], user: "alice", ttl: 300).createdHold)
            #expect(hold.showtimeId == "show" && hold.userId == "alice" && hold.seatIds == ["A2", "A1"])
            #expect(hold.status == .active && hold.orderId == nil)
            let ttl = hold.expiresAt.timeIntervalSinceNow
            #expect(ttl > 290 && ttl <= 301)
            // Whole seconds, so the reply's RFC 3339 text (whole seconds) is the exact instant.
            #expect(hold.expiresAt.timeIntervalSince1970.rounded() == hold.expiresAt.timeIntervalSince1970)
            #expect(ContractJSON.parseDate(ContractJSON.formatDate(hold.expiresAt)) == hold.expiresAt)

            #expect(try f.hold("show", ["A3", "A1", "A4", "A2"], user: "bob").unavailableSeats == ["A1", "A2"])
            // All or nothing: A3 and A4 were not taken by the refused hold.
            let seats = try f.store.availability(showtimeID: "show").get().availability
            #expect(seats.map(\.state) == [.held, .held, .available, .available])
            #expect(seats[0].holdExpiresAt == hold.expiresAt && seats[2].holdExpiresAt == nil)

            #expect(try f.hold("show", ["A9", "A3", "Z"], user: "bob").unknown == ["A9", "Z"])
            #expect(try f.hold("nowhere", ["A1"], user: "bob").isShowtimeNotFound)
            #expect(try f.int("SELECT count(*) AS n FROM holds") == 1)
            // Requests Contracts would refuse are a caller's bug: an error, never a wrong answer.
            for bad in [[String](), ["A3", "A3"]] {
                #expect(throws: PostgresError.self) { try f.hold("show", bad, user: "bob") }
            }
            #expect(throws: PostgresError.self) { try f.hold("show", ["A3"], user: "bob", ttl: 0) }
            #expect(try f.int("SELECT count(*) AS n FROM holds") == 1)
        }
    }

    @Test("idempotency: same key and request replays the hold, another request with the key is key reuse")
    func idempotency() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2", "A3"])
            let request = HoldRequest(
                showtimeId: "show",
                seatIds: ["A1", "A2"],
                userId: "alice",
                idempotencyKey: "k-1"
            )
            #expect(try f.store.findIdempotentHold(userID: "alice", key: "k-1", request: request) == nil)
            let first = try #require(try f.hold("show", ["A1", "A2"], user: "alice", key: "k-1").createdHold)
            let replay = try #require(try f.hold("show", ["A1", "A2"], user: "alice", key: "k-1").replayedHold)
            #expect(replay == first)
            #expect(
                try f.store.findIdempotentHold(userID: "alice", key: "k-1", request: request)?.replayedHold == first
            )
            // Other seats, other order, other showtime: another request.
            #expect(try f.hold("show", ["A3"], user: "alice", key: "k-1").isKeyReused)
            #expect(try f.hold("show", ["A2", "A1"], user: "alice", key: "k-1").isKeyReused)
            let other = HoldRequest(showtimeId: "show", seatIds: ["A3"], userId: "alice", idempotencyKey: "k-1")
            #expect(try f.store.findIdempotentHold(userID: "alice", key: "k-1", request: other)?.isKeyReused == true)
            // Keys are per user.
            let bobs = try f.hold("show", ["A3"], user: "bob", key: "k-1").createdHold
            #expect(bobs != nil)
            // A refusal is the key's first answer too (rule 9): the same request gets it again even once the
            // seat is free, and another request with the key is key reuse.
            #expect(try f.hold("show", ["A3"], user: "carol", key: "k-2").unavailableSeats == ["A3"])
            _ = try f.store.release(ReleaseRequest(holdId: try #require(bobs?.holdId), userId: nil)).get()
            let carol = HoldRequest(showtimeId: "show", seatIds: ["A3"], userId: "carol", idempotencyKey: "k-2")
            let again = try #require(
                try f.store.findIdempotentAnswer(userID: "carol", key: .caller("k-2"), request: carol)
            )
            #expect(again.replayed && again.outcome.unavailableSeats == ["A3"])
            #expect(try f.hold("show", ["A3"], user: "carol", key: "k-2").unavailableSeats == ["A3"])
            try f.define("show", ["A4"])
            #expect(try f.hold("show", ["A4"], user: "carol", key: "k-2").isKeyReused)
            // The replay reports the hold as it stands now.
            _ = try f.store.release(ReleaseRequest(holdId: first.holdId, userId: nil)).get()
            #expect(try f.hold("show", ["A1", "A2"], user: "alice", key: "k-1").replayedHold?.status == .released)
        }
    }

    @Test("release: frees the seats, is idempotent, refuses a stranger, a purchased hold and an unknown hold")
    func release() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2"])
            let hold = try #require(try f.created("show", ["A1"], user: "alice"))
            #expect(
                try f.store.release(ReleaseRequest(holdId: hold.holdId, userId: "mallory")).errorCode == .holdNotOwned
            )
            let released = try f.store.release(ReleaseRequest(holdId: hold.holdId, userId: "alice")).get()
            #expect(released.status == .released && released.holdId == hold.holdId)
            #expect(try f.store.release(ReleaseRequest(holdId: hold.holdId, userId: nil)).value?.status == .released)
            #expect(try f.store.availability(showtimeID: "show").get().summary.available == 2)
            #expect(try f.store.release(ReleaseRequest(holdId: "hold_nope", userId: nil)).errorCode == .holdNotFound)

            let sold = try #require(try f.created("show", ["A1", "A2"], user: "bob"))
            _ = try f.store.purchase(PurchaseRequest(holdId: sold.holdId, orderId: "order-1", userId: nil)).get()
            #expect(try f.store.release(ReleaseRequest(holdId: sold.holdId, userId: nil)).errorCode == .holdNotActive)
            #expect(try f.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.released'") == 1)
        }
    }

    @Test(
        "purchase: sells the seats once, repeats with the same order, refuses another order, a released hold, a stranger"
    )
    func purchase() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2", "A3"])
            let hold = try #require(try f.created("show", ["A1", "A2"], user: "alice"))
            #expect(
                try f.store.purchase(PurchaseRequest(holdId: hold.holdId, orderId: "o-1", userId: "mallory")).errorCode
                    == .holdNotOwned
            )
            let sold = try f.store.purchase(PurchaseRequest(holdId: hold.holdId, orderId: "o-1", userId: "alice")).get()
            #expect(sold.status == .purchased && sold.orderId == "o-1" && sold.seatIds == ["A1", "A2"])
            #expect(
                try f.store.purchase(PurchaseRequest(holdId: hold.holdId, orderId: "o-1", userId: nil)).value == sold
            )
            #expect(
                try f.store.purchase(PurchaseRequest(holdId: hold.holdId, orderId: "o-2", userId: nil)).errorCode
                    == .holdNotActive
            )
            #expect(try f.store.hold(id: hold.holdId).value == sold)
            #expect(
                try f.store.availability(showtimeID: "show").get().summary
                    == AvailabilitySummary(available: 1, held: 0, purchased: 2)
            )
            #expect(try f.hold("show", ["A3", "A2"], user: "bob").unavailableSeats == ["A2"])

            let released = try #require(try f.created("show", ["A3"]))
            _ = try f.store.release(ReleaseRequest(holdId: released.holdId, userId: nil)).get()
            #expect(
                try f.store.purchase(PurchaseRequest(holdId: released.holdId, orderId: "o-3", userId: nil)).errorCode
                    == .holdNotActive
            )
            #expect(
                try f.store.purchase(PurchaseRequest(holdId: "hold_nope", orderId: "o-3", userId: nil)).errorCode
                    == .holdNotFound
            )
            #expect(try f.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'seats.purchased'") == 1)
        }
    }

    @Test("hold.get and availability: found, not found, showtime not found")
    func getAndAvailability() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1"])
            let hold = try #require(try f.created("show", ["A1"]))
            #expect(try f.store.hold(id: hold.holdId).value == hold)
            #expect(try f.store.hold(id: "hold_nope").errorCode == .holdNotFound)
            #expect(try f.store.availability(showtimeID: "nowhere").errorCode == .showtimeNotFound)
        }
    }

    @Test("expiry: a dead hold's seats are free before any sweep; get, purchase and release agree; the sweep runs once")
    func expiry() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2"])
            let dead = try #require(try f.created("show", ["A1", "A2"], user: "alice", ttl: 1))
            // Wait on the database clock, the one that decides.
            try f.connection.query(
                "SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - now()) + 0.05))",
                [dead.expiresAt]
            )

            let seats = try f.store.availability(showtimeID: "show").get()
            #expect(seats.summary == AvailabilitySummary(available: 2, held: 0, purchased: 0))
            #expect(seats.availability.allSatisfy { $0.holdExpiresAt == nil })
            #expect(try f.store.hold(id: dead.holdId).value?.status == .expired)
            #expect(
                try f.store.purchase(PurchaseRequest(holdId: dead.holdId, orderId: "o-1", userId: nil)).errorCode
                    == .holdExpired
            )
            // Before any sweep, the seat is holdable again.
            let newer = try #require(try f.created("show", ["A2"], user: "bob"))
            #expect(try f.store.hold(id: dead.holdId).value?.status == .expired)

            let swept = try f.store.expireDueHolds(batchSize: 10)
            #expect(swept == [ExpiredHold(holdID: dead.holdId, showtimeID: "show", seatIDs: ["A1", "A2"])])
            #expect(try f.store.expireDueHolds(batchSize: 10) == [])
            // The sweep freed A1 and left A2 to the newer hold.
            let after = try f.store.availability(showtimeID: "show").get().availability
            #expect(after.map(\.state) == [.available, .held])
            #expect(try f.store.hold(id: newer.holdId).value?.status == .active)
            #expect(try f.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.expired'") == 1)
            // Release of an expired hold answers the hold as it stands.
            #expect(try f.store.release(ReleaseRequest(holdId: dead.holdId, userId: nil)).value?.status == .expired)
            #expect(
                try f.store.purchase(PurchaseRequest(holdId: dead.holdId, orderId: "o-1", userId: nil)).errorCode
                    == .holdExpired
            )
        }
    }

    @Test("release of a dead, unswept hold marks it expired with its one hold.expired; the sweep then skips it")
    func releaseOfDeadHold() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1"])
            let dead = try #require(try f.created("show", ["A1"], ttl: 1))
            try f.connection.query(
                "SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - now()) + 0.05))",
                [dead.expiresAt]
            )
            #expect(try f.store.release(ReleaseRequest(holdId: dead.holdId, userId: nil)).value?.status == .expired)
            #expect(try f.store.expireDueHolds(batchSize: 10) == [])
            #expect(try f.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.expired'") == 1)
            #expect(try f.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.released'") == 0)
            #expect(try f.store.availability(showtimeID: "show").get().summary.available == 1)
        }
    }
}
