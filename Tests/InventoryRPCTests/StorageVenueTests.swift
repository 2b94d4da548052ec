import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// The venue features straight at the store (issue 15; decisions 0018 and 0019).
@Suite("Storage: venue features", .serialized)
struct StorageVenueTests {
    @Test(
        "extension racing the sweep and a purchase at the expiry instant: each hold has exactly one outcome, and its answers, its status, its events and its seats' versions agree"
    )
    func extensionVersusSweepAndPurchase() throws {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            let rounds = 16
            try setup.define("show", (1...rounds).map { "S\($0)" })
            var holds: [Hold] = []
            for round in 1...rounds { holds.append(try #require(try setup.created("show", ["S\(round)"], ttl: 1))) }
            let last = holds.map(\.expiresAt).max()!
            let ids = holds.map(\.holdId)
            // Three threads start 20 ms (extender), 10 ms (buyer) and 0 ms (sweeper) before the expiry instant by
            // the database clock and run across it. The buyer buys every other hold.
            let results = try onThreads(3) { index, start in
                let f = try StoreFixture(url)
                start()
                try f.connection.query(
                    "SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp()) - $2::float8))",
                    [last, [0.02, 0.01, 0.0][index]]
                )
                switch index {
                case 0:
                    return try ids.map { id -> String in
                        switch try f.store.extend(HoldExtendRequest(holdId: id), ttlSeconds: 300, maxHoldSeconds: 900) {
                        case .success(let hold): return hold.expiresAt > last ? "extended:\(id)" : "unchanged:\(id)"
                        case .failure(let error): return "\(error.code.rawValue):\(id)"
                        }
                    }
                case 1:
                    return try ids.enumerated().filter { $0.offset % 2 == 0 }.map { _, id -> String in
                        switch try f.store.purchase(PurchaseRequest(holdId: id, orderId: "order-\(id)", userId: nil)) {
                        case .success: return "purchased:\(id)"
                        case .failure(let error): return "\(error.code.rawValue):\(id)"
                        }
                    }
                default:
                    var expired: [String] = []
                    let deadline = Date().addingTimeInterval(3)
                    while Date() < deadline {
                        expired += try f.store.expireDueHolds(batchSize: 3).map { "expired:\($0.holdID)" }
                    }
                    return expired
                }
            }
            func answered(_ lines: [String], _ prefix: String) -> Set<String> {
                Set(lines.filter { $0.hasPrefix(prefix + ":") }.map { String($0.dropFirst(prefix.count + 1)) })
            }
            let extended = answered(results[0], "extended")
            let purchased = answered(results[1], "purchased")
            let expired = answered(results[2], "expired")
            #expect(extended.isDisjoint(with: expired), "an extended hold is never expired by the sweep")
            #expect(purchased.isDisjoint(with: expired), "a purchased hold is never expired")
            for line in results[0] where !line.hasPrefix("extended:") {
                #expect(line.hasPrefix("HOLD_EXPIRED:") || line.hasPrefix("HOLD_NOT_ACTIVE:"), "\(line)")
            }
            for line in results[1] where !line.hasPrefix("purchased:") {
                #expect(line.hasPrefix("HOLD_EXPIRED:"), "\(line)")
            }

            for id in ids {
                let status = try setup.connection.query("SELECT status FROM holds WHERE hold_id = $1", [id]).rows[0]
                    .decode("status", as: String.self)
                let events = try setup.connection.query(
                    "SELECT event_type FROM outbox WHERE hold_id = $1 ORDER BY id",
                    [id]
                ).rows.map { try $0.decode("event_type", as: String.self) }
                // Exactly one outcome: the status says which, and the answers and the events agree with it.
                switch status {
                case "purchased":
                    #expect(purchased.contains(id) && !expired.contains(id))
                    let expected =
                        extended.contains(id)
                        ? ["hold.created", "hold.extended", "seats.purchased"] : ["hold.created", "seats.purchased"]
                    #expect(events == expected, "\(id): \(events)")
                case "expired":
                    #expect(expired.contains(id) && !extended.contains(id) && !purchased.contains(id))
                    #expect(events == ["hold.created", "hold.expired"], "\(id): \(events)")
                case "active":
                    #expect(extended.contains(id) && !purchased.contains(id) && !expired.contains(id))
                    #expect(events == ["hold.created", "hold.extended"], "\(id): \(events)")
                default:
                    Issue.record("hold \(id) is \(status)")
                }
            }
            #expect(!expired.isEmpty || !extended.isEmpty, "the race ran across the expiry")
            // Rule 8: per seat, the events' versions grow by one each, and the last is the seat's version now.
            let rows = try setup.connection.query(
                """
                SELECT s.seat_id, s.version, array_agg((o.payload -> 'seatVersions' ->> s.seat_id)::bigint ORDER BY o.id)
                       AS versions
                  FROM seat_states s JOIN outbox o ON o.payload -> 'seatVersions' ? s.seat_id
                 GROUP BY s.seat_id, s.version
                """
            ).rows
            #expect(rows.count == rounds)
            for row in rows {
                let versions = try row.decode("versions", as: [Int64].self)
                let seat = try row.decode("seat_id", as: String.self)
                #expect(versions == Array(1...Int64(versions.count)), "\(seat)")
                #expect(try row.decode("version", as: Int64.self) == versions.last)
            }
        }
    }

    @Test(
        "a best-available hold with a caller's key: the same request replays its hold, a refusal is kept even after seats free up, another request is IDEMPOTENCY_KEY_REUSED"
    )
    func bestAvailableIdempotency() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            _ = try f.store.defineSeatMap(
                SeatsDefineRequest(
                    showtimeId: "show",
                    seats: (1...3).map { (n: Int) in SeatDefinition(seatId: "A\(n)", section: "S", row: "A", number: n)
                    }
                )
            )
            func decide(_ quantity: Int, key: String, user: String = "ann") throws -> HoldDecision {
                try f.store.decideBestAvailableHold(
                    holdID: StoreFixture.newHoldID(),
                    request: BestAvailableHoldRequest(
                        showtimeId: "show",
                        quantity: quantity,
                        userId: user,
                        together: true
                    ),
                    key: .caller(key),
                    ttlSeconds: 300
                )
            }
            let first = try decide(2, key: "k1")
            let hold = try #require(first.outcome.createdHold)
            #expect(hold.seatIds == ["A1", "A2"] || hold.seatIds == ["A2", "A3"], "\(hold.seatIds)")
            let again = try decide(2, key: "k1")
            #expect(again.replayed && again.outcome.replayedHold?.holdId == hold.holdId)
            #expect(try decide(1, key: "k1").outcome.isKeyReused)

            let refused = try decide(3, key: "k2")
            #expect(refused.outcome == .noSuitableSeats(quantity: 3) && !refused.replayed)
            _ = try f.store.release(ReleaseRequest(holdId: hold.holdId, userId: "ann"))
            let kept = try decide(3, key: "k2")
            #expect(kept.replayed && kept.outcome == .noSuitableSeats(quantity: 3), "rule 9: the refusal is kept")
            #expect(try decide(3, key: "k3").outcome.createdHold?.seatIds == ["A1", "A2", "A3"])
        }
    }

    @Test("seat history older than HISTORY_RETENTION_DAYS is purged in batches; newer entries stay")
    func historyRetention() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["S1", "S2"])
            for seat in ["S1", "S2"] {
                let hold = try #require(try f.created("show", [seat]))
                _ = try f.store.release(ReleaseRequest(holdId: hold.holdId, userId: "user_1"))
            }
            #expect(try f.int("SELECT count(*) AS n FROM seat_history") == 4)
            try f.connection.simpleQuery(
                "UPDATE seat_history SET occurred_at = occurred_at - interval '400 days' WHERE seat_id = 'S1'"
            )
            #expect(try f.store.purgeSeatHistory(retentionDays: 365, batchSize: 1) == 1)
            #expect(try f.store.purgeSeatHistory(retentionDays: 365, batchSize: 1) == 1)
            #expect(try f.store.purgeSeatHistory(retentionDays: 365, batchSize: 1) == 0)
            #expect(try f.int("SELECT count(*) AS n FROM seat_history WHERE seat_id = 'S2'") == 2)
            #expect(try f.int("SELECT count(*) AS n FROM seat_history") == 2)
        }
    }

    @Test("control: an extension that does not lock the hold row races the sweep into two outcomes")
    func extensionControl() throws {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            // The control (test-only): the same function without FOR UPDATE on the hold and without re-reading it.
            try setup.connection.simpleQuery(
                """
                CREATE OR REPLACE FUNCTION inventory_extend_hold(p_hold_id text, p_user_id text, p_ttl_seconds integer,
                                                                 p_max_hold_seconds integer)
                RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
                DECLARE
                    v_hold holds;
                BEGIN
                    SELECT * INTO v_hold FROM holds h WHERE h.hold_id = p_hold_id;
                    IF v_hold.status <> 'active' OR v_hold.expires_at <= now() THEN
                        RETURN inventory_outcome('expired');
                    END IF;
                    PERFORM pg_sleep(1.0);
                    UPDATE holds h SET expires_at = inventory_ceil_second(now() + make_interval(secs => p_ttl_seconds))
                     WHERE h.hold_id = p_hold_id AND h.status = 'active' RETURNING * INTO v_hold;
                    IF NOT FOUND THEN
                        SELECT * INTO v_hold FROM holds h WHERE h.hold_id = p_hold_id;
                    END IF;
                    RETURN inventory_result('ok', v_hold);
                END $$;
                """
            )
            try setup.define("show", ["S1", "S2", "S3", "S4"])
            var holds: [Hold] = []
            for seat in 1...4 { holds.append(try #require(try setup.created("show", ["S\(seat)"], ttl: 1))) }
            let last = holds.map(\.expiresAt).max()!
            let holdIDs = holds.map(\.holdId)
            let results = try onThreads(2) { index, start in
                let f = try StoreFixture(url)
                start()
                try f.connection.query(
                    "SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp()) - $2::float8))",
                    // The control's window is wide (checked 0.5 s before the expiry, written 1 s later), so that a
                    // loaded machine's scheduling cannot close it: the sweep, from 20 ms after the expiry, acts
                    // inside it.
                    [last, index == 0 ? 0.5 : -0.02]
                )
                if index == 0 {
                    return try holdIDs.map { holdID -> String in
                        if case .success = try f.store.extend(
                            HoldExtendRequest(holdId: holdID),
                            ttlSeconds: 300,
                            maxHoldSeconds: 900
                        ) {
                            return "extended:\(holdID)"
                        }
                        return "refused:\(holdID)"
                    }
                }
                var expired: [String] = []
                let deadline = Date().addingTimeInterval(2)
                while Date() < deadline { expired += try f.store.expireDueHolds(batchSize: 10).map(\.holdID) }
                return expired.map { "expired:\($0)" }
            }
            let extended = Set(results[0].filter { $0.hasPrefix("extended:") }.map { $0.dropFirst(9) })
            let expired = Set(results[1].map { $0.dropFirst(8) })
            #expect(!extended.isDisjoint(with: expired), "the control must show a hold both extended and expired")
        }
    }
}
