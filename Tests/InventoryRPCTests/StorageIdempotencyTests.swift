import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

@Suite("Storage: idempotency records and deadlines")
struct StorageIdempotencyTests {
    static func request(_ showtimeID: String, _ seats: [String], user: String, key: String? = nil) -> HoldRequest {
        HoldRequest(showtimeId: showtimeID, seatIds: seats, userId: user, idempotencyKey: key)
    }

    @Test(
        "a duplicate waits in the database for the first request with its key and replays it; past its deadline it gives up and stores nothing"
    )
    func duplicateWaitsOnTheKey() async throws {
        try await withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2"])
            let request = Self.request("show", ["A1"], user: "alice", key: "k-1")
            // The first request, still deciding: its transaction holds the key's row.
            let first = try TestDatabase.connect(url)
            defer { first.close() }
            try first.query("BEGIN")
            try first.query(
                "SELECT * FROM inventory_hold_idempotent('hold_first', 'show', ARRAY['A1'], 'alice', 'k-1', $1, 300, false)",
                [RequestHash.of(request)]
            )

            // With a deadline: it waits until then, rolls back, and nothing is stored for it.
            let impatient = try StoreFixture(url)
            do {
                _ = try impatient.store.decideHold(
                    holdID: StoreFixture.newHoldID(),
                    request: request,
                    key: .caller("k-1"),
                    ttlSeconds: 300,
                    deadline: epochMilliseconds() + 300
                )
                Issue.record("answered although the key's first request was still deciding at its deadline")
            } catch {
                #expect(InventoryStore.isDeadlineError(error), "\(error)")
            }

            // Without one, it waits for the first to commit, then replays its hold.
            let duplicate = Task.detached {
                let g = try StoreFixture(url)
                return try g.store.decideHold(
                    holdID: StoreFixture.newHoldID(),
                    request: request,
                    key: .caller("k-1"),
                    ttlSeconds: 300
                )
            }
            for _ in 0..<200 {
                let waiting = try f.int(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting > 0 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            try first.query("COMMIT")
            let decision = try await duplicate.value
            #expect(decision.replayed)
            #expect(decision.outcome.replayedHold?.holdId == "hold_first")
            #expect(try f.int("SELECT count(*) AS n FROM holds") == 1)
        }
    }

    @Test("the purge deletes records older than the retention in batches, oldest first, and keeps younger ones")
    func purgeInBatches() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            for user in ["u1", "u2", "u3", "u4", "u5"] {
                // Refused (no such showtime), and kept: a caller's key keeps refusals.
                #expect(try f.hold("nowhere", ["A1"], user: user, key: "k").isShowtimeNotFound)
            }
            try f.connection.query(
                "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' WHERE user_id IN ('u1', 'u2', 'u3')"
            )
            var batches: [Int] = []
            while true {
                let deleted = try f.store.purgeIdempotencyRecords(retentionHours: 48, batchSize: 2)
                batches.append(deleted)
                if deleted < 2 { break }
            }
            #expect(batches == [2, 1])
            let left = try f.connection.query("SELECT user_id FROM idempotency_keys ORDER BY user_id").rows
            #expect(left.map { $0["user_id"] } == ["u4", "u5"])
        }
    }

    @Test(
        "derived keys: a success is kept and replayed, a refusal writes nothing, a message id reused for another request is not a redelivery"
    )
    func derivedKeys() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2"])
            let request = Self.request("show", ["A1"], user: "bob")
            let key = HoldKey.derived("@facade/m-1")
            let first = try f.store.decideHold(holdID: "hold_1", request: request, key: key, ttlSeconds: 300)
            #expect(first.outcome.createdHold?.holdId == "hold_1" && !first.replayed)
            let again = try f.store.decideHold(holdID: "hold_2", request: request, key: key, ttlSeconds: 300)
            #expect(again.outcome.replayedHold?.holdId == "hold_1" && again.replayed)

            let refused = try f.store.decideHold(
                holdID: "hold_3",
                request: Self.request("show", ["A1"], user: "carol"),
                key: .derived("@facade/m-2"),
                ttlSeconds: 300
            )
            #expect(refused.outcome.unavailableSeats == ["A1"] && !refused.replayed)
            #expect(try f.int("SELECT count(*) AS n FROM idempotency_keys WHERE user_id = 'carol'") == 0)

            let other = try f.store.decideHold(
                holdID: "hold_4",
                request: Self.request("show", ["A2"], user: "bob"),
                key: key,
                ttlSeconds: 300
            )
            #expect(other.outcome.createdHold?.holdId == "hold_4")
        }
    }
}
