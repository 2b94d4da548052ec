import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// Group commit at the store (migration 12, decision 0022): several holds decided in one transaction, each
/// with the outcome it would have had alone.
@Suite("Storage: group commit", .serialized)
struct StorageGroupCommitTests {
    private func seats(
        _ seats: [String],
        user: String = "user_1",
        key: HoldKey? = nil,
        deadline: Int64? = nil,
        show: String = "show"
    ) -> HoldBatchRequest {
        HoldBatchRequest(
            kind: .seats(HoldRequest(showtimeId: show, seatIds: seats, userId: user)),
            holdID: StoreFixture.newHoldID(),
            key: key,
            deadline: deadline
        )
    }

    private func outcome(_ result: HoldBatchResult) -> HoldOutcome? {
        if case .decided(let decision) = result { decision.outcome } else { nil }
    }

    private func heldBy(_ f: StoreFixture, _ holdID: String) throws -> Int {
        try f.int("SELECT count(*)::integer AS n FROM seat_states WHERE hold_id = $1 AND state = 'held'", [holdID])
    }

    @Test(
        "one bad request in a batch changes nothing of the others: a failing one and one past its deadline roll back alone"
    )
    func badRequestRollsBackAlone() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", (1...9).map { "S\($0)" })
            _ = try f.created("show", ["S3"], user: "other")
            let batch = [
                seats(["S1"]),  // 0: created
                seats(["S2", "S2"]),  // 1: refused by the function (duplicate seats): an error, rolled back alone
                seats(["S3"]),  // 2: unavailable (held before the batch)
                seats(["S4"], deadline: epochMilliseconds() - 1),  // 3: past its deadline: nothing of it commits
                seats(["S404"]),  // 4: unknown seat
                seats(["S5"]),  // 5: created
                seats(["S5"], user: "user_2"),  // 6: S5 went to request 5 of the same batch: unavailable
                seats(["S6", "S7"]),  // 7: created
            ]
            let results = try f.store.decideHolds(batch, ttlSeconds: 300, seatLimit: nil, wait: false)
            #expect(results.count == batch.count)
            #expect(outcome(results[0])?.createdHold != nil)
            guard case .failed(let error) = results[1] else {
                Issue.record("request 1 should fail alone, got \(results[1])")
                return
            }
            #expect(error.sqlState == "22023")
            #expect(outcome(results[2])?.unavailableSeats == ["S3"])
            guard case .deadlinePassed = results[3] else {
                Issue.record("request 3 is past its deadline, got \(results[3])")
                return
            }
            #expect(outcome(results[4])?.unknown == ["S404"])
            #expect(outcome(results[5])?.createdHold != nil)
            #expect(outcome(results[6])?.unavailableSeats == ["S5"])
            #expect(outcome(results[7])?.createdHold?.seatIds == ["S6", "S7"])

            // Committed: exactly the created holds, their seats and one hold.created each.
            for index in [0, 5, 7] { #expect(try heldBy(f, batch[index].holdID) == (index == 7 ? 2 : 1)) }
            for index in [1, 3, 6] {
                #expect(try f.int("SELECT count(*)::integer AS n FROM holds WHERE hold_id = $1", [batch[index].holdID]) == 0)
            }
            #expect(try f.int("SELECT count(*)::integer AS n FROM seat_states WHERE seat_id IN ('S2', 'S4') AND state <> 'available'") == 0)
            #expect(
                try f.int(
                    "SELECT count(*)::integer AS n FROM outbox WHERE event_type = 'hold.created' AND hold_id = ANY ($1::text[])",
                    [[0, 5, 7].map { batch[$0].holdID }]
                ) == 3
            )
        }
    }

    @Test("inside a batch the seat limit counts the batch's own holds, and a key seen twice replays the first")
    func limitAndKeysInsideABatch() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", (1...9).map { "S\($0)" })
            let batch = [
                seats(["S1", "S2"], user: "greedy"),
                seats(["S3", "S4"], user: "greedy"),  // 4 seats: past the limit of 3
                seats(["S5"], user: "keyed", key: .caller("k1")),
                seats(["S5"], user: "keyed", key: .caller("k1")),  // the same request again: replayed
                seats(["S6"], user: "keyed", key: .caller("k1")),  // another request, same key: reused
            ]
            let results = try f.store.decideHolds(
                batch,
                ttlSeconds: 300,
                seatLimit: SeatLimit(maxSeatsPerUser: 3),
                wait: false
            )
            #expect(outcome(results[0])?.createdHold != nil)
            #expect(outcome(results[1]) == .seatLimitReached(limit: 3, held: 2))
            let first = outcome(results[2])?.createdHold
            #expect(first != nil)
            guard case .decided(let again) = results[3] else {
                Issue.record("request 3 should replay, got \(results[3])")
                return
            }
            #expect(again.replayed)
            #expect(again.outcome.replayedHold?.holdId == first?.holdId)
            #expect(outcome(results[4])?.isKeyReused == true)
        }
    }

    @Test("a request whose seat another transaction holds is deferred, not waited for; decided alone it waits")
    func busySeatIsDeferred() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["S1", "S2", "S3"])
            let blocker = try TestDatabase.connect(url)
            defer { blocker.close() }
            try blocker.simpleQuery("BEGIN")
            try blocker.simpleQuery("SELECT 1 FROM seat_states WHERE seat_id = 'S2' FOR UPDATE")
            let batch = [seats(["S1"]), seats(["S2", "S3"]), seats(["S3"], user: "user_2")]
            let results = try f.store.decideHolds(batch, ttlSeconds: 300, seatLimit: nil, wait: false)
            #expect(outcome(results[0])?.createdHold != nil)
            guard case .deferred = results[1] else {
                Issue.record("request 1 waits on S2: deferred expected, got \(results[1])")
                return
            }
            // The deferred request did nothing: S3 was free for the request after it.
            #expect(outcome(results[2])?.createdHold != nil)
            try blocker.simpleQuery("ROLLBACK")
            let alone = try f.store.decideHolds([batch[1]], ttlSeconds: 300, seatLimit: nil, wait: true)
            #expect(outcome(alone[0])?.unavailableSeats == ["S3"])
        }
    }

    /// Two connections decide batches whose requests name the same seats in opposite orders, waiting for every
    /// lock (`wait: true`, the path that can wait). The batch function locks every seat of a batch first, in
    /// one global order, so no round deadlocks: no request had to be decided again (`retriedRequests`), which
    /// a deadlock (rolled back by PostgreSQL, retried by the store) would show. The control below shows it
    /// would.
    @Test("batches naming the same seats in opposite orders never deadlock: nothing is retried")
    func oppositeOrdersNeverDeadlock() throws {
        let retried = try oppositeOrders(rounds: 40, control: false)
        #expect(retried == [0, 0], "a deadlock rolled a request back")
    }

    /// CONTROL: the batch function without its first lock step (made in this test's scratch database only),
    /// with a pause between requests so both batches hold their first seat before asking for the second.
    @Test("CONTROL: without the batch's global lock order the same rounds deadlock and are retried")
    func controlWithoutLockOrderDeadlocks() throws {
        let retried = try oppositeOrders(rounds: 3, control: true)
        #expect(retried.reduce(0, +) > 0, "control: the test catches batches that lock out of order")
    }

    /// The SQL of migration 12 with its step 2 (every named seat locked first, in order) removed when waiting.
    static var unorderedBatchFunction: String {
        var sql = String(decoding: PackageResources._012_group_commit_sql, as: UTF8.self)
        sql = sql.replacingOccurrences(of: "CREATE FUNCTION inventory_hold_batch", with: "CREATE OR REPLACE FUNCTION inventory_hold_batch")
        let start = sql.range(of: "    IF p_wait THEN\n        PERFORM 1 FROM seat_states s")!
        let end = sql.range(of: "           FOR UPDATE OF s;\n    ELSE\n", range: start.upperBound..<sql.endIndex)!
        sql.replaceSubrange(start.lowerBound..<end.upperBound, with: "    IF p_wait THEN\n        NULL;\n    ELSE\n")
        sql = sql.replacingOccurrences(
            of: "        v_deadline := (v_item->>'deadline')::bigint;\n",
            with: "        PERFORM pg_sleep(0.05);\n        v_deadline := (v_item->>'deadline')::bigint;\n"
        )
        return sql
    }

    /// The requests each connection had to decide again.
    private func oppositeOrders(rounds: Int, control: Bool) throws -> [Int] {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", (0..<(rounds * 2)).map { "S\($0)" })
            if control { try f.connection.simpleQuery(Self.unorderedBatchFunction) }
            let outcomes = try onThreads(2) { index, start in
                let mine = try StoreFixture(url)
                start()
                var decided = 0
                for round in 0..<rounds {
                    let a = "S\(round * 2)"
                    let b = "S\(round * 2 + 1)"
                    let batch = [
                        self.seats(index == 0 ? [a] : [b], user: "u\(index)"),
                        self.seats(index == 0 ? [b] : [a], user: "u\(index)"),
                    ]
                    for result in try mine.store.decideHolds(batch, ttlSeconds: 300, seatLimit: nil, wait: true) {
                        if case .decided = result { decided += 1 }
                    }
                }
                return [decided, mine.store.retriedRequests]
            }
            #expect(outcomes.map { $0[0] } == [rounds * 2, rounds * 2])
            // Every seat held exactly once.
            #expect(try f.int("SELECT count(*)::integer AS n FROM seat_states WHERE state = 'held'") == rounds * 2)
            return outcomes.map { $0[1] }
        }
    }

    @Test("best-available requests and requests for named seats decide together")
    func bestAvailableInABatch() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["S1", "S2", "S3"])
            let best = HoldBatchRequest(
                kind: .best(BestAvailableHoldRequest(showtimeId: "show", quantity: 2, userId: "user_2")),
                holdID: StoreFixture.newHoldID(),
                key: nil,
                deadline: nil
            )
            var second = best
            second.holdID = StoreFixture.newHoldID()
            let results = try f.store.decideHolds([seats(["S2"]), best, second], ttlSeconds: 300, seatLimit: nil, wait: false)
            #expect(outcome(results[0])?.createdHold != nil)
            let chosen = outcome(results[1])?.createdHold?.seatIds
            #expect(chosen?.count == 2)
            #expect(chosen?.contains("S2") == false)
            #expect(outcome(results[2]) == .noSuitableSeats(quantity: 2))
        }
    }
}
