import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// Straight at the store, each thread on its own connection. These are only worth their name because
/// they fail when the claim's condition is removed: see `StorageControlTests` and decision 0002.
@Suite("Storage: concurrency", .serialized)
struct StorageConcurrencyTests {
    /// Connections per test: the server is shared (max_connections 100), so the 200 attempts of a storm
    /// are spread over this many connections firing at once.
    static let connections = 16

    @Test("200 concurrent holds on one seat: exactly one is created, 199 are unavailable")
    func oneSeatStorm() throws {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            try setup.define("show", ["A1"])
            let perThread = 200 / Self.connections + 1
            let outcomes = try onThreads(Self.connections) { index, start in
                let f = try StoreFixture(url)
                start()
                var mine: [String] = []
                for attempt in 0..<perThread where index * perThread + attempt < 200 {
                    switch try f.hold("show", ["A1"], user: "user_\(index)_\(attempt)") {
                    case .created: mine.append("created")
                    case .unavailable(let seats) where seats == ["A1"]: mine.append("unavailable")
                    case let other: mine.append("unexpected \(other)")
                    }
                }
                return mine
            }.flatMap { $0 }
            #expect(outcomes.count == 200)
            #expect(outcomes.filter { $0 == "created" }.count == 1)
            #expect(outcomes.filter { $0 == "unavailable" }.count == 199)
            #expect(try setup.int("SELECT count(*) AS n FROM holds WHERE status = 'active'") == 1)
            #expect(try setup.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.created'") == 1)
        }
    }

    @Test(
        "50 threads holding 1-4 random seats of 20: no seat in two live holds, and the database agrees with every answer"
    )
    func multiSeatStorm() throws {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            let seatIDs = (1...20).map { "S\($0)" }
            try setup.define("show", seatIDs)
            struct Answer: Sendable {
                var user: String
                var seats: [String]
                var holdID: String?
                var unavailable: [String]?
            }
            let answers = try onThreads(50) { index, start in
                let f = try StoreFixture(url)
                var generator = SystemRandomNumberGenerator()
                let seats = Array(seatIDs.shuffled(using: &generator).prefix(Int.random(in: 1...4)))
                start()
                let user = "user_\(index)"
                switch try f.hold("show", seats, user: user) {
                case .created(let hold): return Answer(user: user, seats: seats, holdID: hold.holdId, unavailable: nil)
                case .unavailable(let taken): return Answer(user: user, seats: seats, holdID: nil, unavailable: taken)
                case let other: throw TestFailure("unexpected outcome \(other)")
                }
            }
            let winners = answers.filter { $0.holdID != nil }
            #expect(!winners.isEmpty)
            // No seat in two created holds.
            let heldSeats = winners.flatMap(\.seats)
            #expect(Set(heldSeats).count == heldSeats.count)
            // The database agrees with every answer: each created hold has exactly its seats...
            let rows = try setup.connection.query("SELECT seat_id, hold_id FROM seat_states WHERE state = 'held'").rows
            var holder: [String: String] = [:]
            for row in rows {
                holder[try row.decode("seat_id", as: String.self)] = try row.decode("hold_id", as: String.self)
            }
            #expect(holder.count == heldSeats.count)
            for winner in winners {
                for seat in winner.seats { #expect(holder[seat] == winner.holdID) }
            }
            // ...and each refusal named only seats that are in a created hold, and at least one of its own.
            for loser in answers where loser.holdID == nil {
                let taken = try #require(loser.unavailable)
                #expect(!taken.isEmpty && Set(taken).isSubset(of: Set(loser.seats)))
                for seat in taken { #expect(holder[seat] != nil) }
                // All or nothing: a refused request left no hold behind.
                #expect(try setup.int("SELECT count(*) AS n FROM holds WHERE user_id = $1", [loser.user]) == 0)
            }
            #expect(try setup.int("SELECT count(*) AS n FROM holds") == winners.count)
            #expect(
                try setup.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.created'") == winners.count
            )
        }
    }

    @Test("64 holds racing with one idempotency key: one hold, every answer is that hold, never unavailable")
    func idempotentStorm() throws {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            try setup.define("show", ["A1", "A2"])
            let answers = try onThreads(Self.connections) { index, start in
                let f = try StoreFixture(url)
                start()
                return try (0..<4).map { _ -> String in
                    switch try f.hold("show", ["A1", "A2"], user: "alice", key: "retry-1") {
                    case .created(let hold): return "created:\(hold.holdId)"
                    case .replayed(let hold): return "replayed:\(hold.holdId)"
                    case let other: return "unexpected:\(other)"
                    }
                }
            }.flatMap { $0 }
            #expect(answers.count == Self.connections * 4)
            #expect(answers.filter { $0.hasPrefix("created:") }.count == 1)
            #expect(Set(answers.map { $0.split(separator: ":").last! }).count == 1)
            #expect(try setup.int("SELECT count(*) AS n FROM holds") == 1)
            #expect(try setup.int("SELECT count(*) AS n FROM outbox") == 1)
        }
    }

    @Test("purchase racing the expiry sweep: exactly one of them wins, every time")
    func purchaseVersusExpiry() throws {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            let rounds = 12
            try setup.define("show", (1...rounds).map { "S\($0)" })
            var holds: [Hold] = []
            for round in 1...rounds { holds.append(try #require(try setup.created("show", ["S\(round)"], ttl: 1))) }
            // Expiry is in whole seconds, so they all die at (nearly) one instant; the purchases start 30 ms
            // before it by the database clock and run across it, while the sweeper sweeps from that instant on.
            let last = holds.map(\.expiresAt).max()!
            let ids = holds.map(\.holdId)
            let results = try onThreads(2) { index, start in
                let f = try StoreFixture(url)
                start()
                try f.connection.query(
                    "SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp()) - $2::float8))",
                    [last, index == 0 ? 0.03 : 0.0]
                )
                if index == 0 {
                    return try ids.map { id -> String in
                        switch try f.store.purchase(PurchaseRequest(holdId: id, orderId: "order-\(id)", userId: nil)) {
                        case .success: return "purchased:\(id)"
                        case .failure(let error): return "\(error.code.rawValue):\(id)"
                        }
                    }
                }
                var expired: [String] = []
                let deadline = Date().addingTimeInterval(5)
                while Date() < deadline {
                    expired += try f.store.expireDueHolds(batchSize: 3).map { "expired:\($0.holdID)" }
                    let done = try f.int("SELECT count(*) AS n FROM holds WHERE status <> 'active'")
                    if done == ids.count { break }
                }
                return expired
            }
            let purchased = Set(results[0].filter { $0.hasPrefix("purchased:") }.map { $0.dropFirst(10) })
            let expired = Set(results[1].map { $0.dropFirst(8) })
            #expect(purchased.isDisjoint(with: expired))
            #expect(purchased.count + expired.count == rounds)
            for line in results[0] where !line.hasPrefix("purchased:") { #expect(line.hasPrefix("HOLD_EXPIRED:")) }
            #expect(try setup.int("SELECT count(*) AS n FROM holds WHERE status = 'purchased'") == purchased.count)
            #expect(try setup.int("SELECT count(*) AS n FROM holds WHERE status = 'expired'") == expired.count)
            #expect(try setup.int("SELECT count(*) AS n FROM seat_states WHERE state = 'purchased'") == purchased.count)
            #expect(try setup.int("SELECT count(*) AS n FROM seat_states WHERE state = 'available'") == expired.count)
            #expect(
                try setup.int(
                    "SELECT count(*) AS n FROM outbox WHERE event_type IN ('hold.expired', 'seats.purchased')"
                ) == rounds
            )
        }
    }

    @Test("two concurrent sweepers never expire a hold twice")
    func concurrentSweepers() throws {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            let count = 300
            try setup.define("show", (1...count).map { "S\($0)" })
            // Dead holds made directly (cheaper than waiting): claim, then move expires_at into the past.
            for seat in 1...count { _ = try #require(try setup.created("show", ["S\(seat)"])) }
            try setup.connection.simpleQuery(
                """
                UPDATE holds SET expires_at = expires_at - interval '1 hour';
                UPDATE seat_states SET hold_expires_at = hold_expires_at - interval '1 hour' WHERE state = 'held';
                """
            )
            let swept = try onThreads(2) { _, start in
                let f = try StoreFixture(url)
                start()
                var mine: [String] = []
                while true {
                    let batch = try f.store.expireDueHolds(batchSize: 7)
                    if batch.isEmpty { break }
                    mine += batch.map(\.holdID)
                }
                return mine
            }
            let all = swept.flatMap { $0 }
            #expect(all.count == count && Set(all).count == count)
            #expect(try setup.int("SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.expired'") == count)
            #expect(
                try setup.int("SELECT count(DISTINCT hold_id) AS n FROM outbox WHERE event_type = 'hold.expired'")
                    == count
            )
            #expect(try setup.int("SELECT count(*) AS n FROM seat_states WHERE state = 'available'") == count)
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
