import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// The per-user seat limit at the store (migration 7, decision 0015), straight at the database with many
/// connections at once. The storm is worth its name because its control, the same count without the
/// (user, showtime) advisory lock, lets more than the limit through in the same harness.
@Suite("Storage: per-user seat limit", .serialized)
struct StorageSeatLimitTests {
    static let limit = 10
    static let attempts = 50

    /// `attempts` one-seat holds by one user from `StorageConcurrencyTests.connections` connections started
    /// together; `statement` decides each (parameters: hold id, showtime, seats, user, TTL, limit).
    private func storm(_ statement: String, prepare: String? = nil) throws -> (created: Int, refused: Int, held: Int) {
        try withTestDatabase { url in
            let setup = try StoreFixture(url)
            try setup.define("show", (1...Self.attempts).map { "S\($0)" })
            if let prepare { try setup.connection.simpleQuery(prepare) }
            let connections = StorageConcurrencyTests.connections
            let perThread = Self.attempts / connections + 1
            let outcomes = try onThreads(connections) { index, start in
                let f = try StoreFixture(url)
                start()
                var mine: [String] = []
                for attempt in 0..<perThread where index * perThread + attempt < Self.attempts {
                    let seat = "S\(index * perThread + attempt + 1)"
                    let row = try f.connection.query(
                        statement,
                        [StoreFixture.newHoldID(), "show", [seat], "greedy", 300, Self.limit]
                    ).rows[0]
                    mine.append(try row.decode("outcome", as: String.self))
                }
                return mine
            }.flatMap { $0 }
            let held = try setup.int(
                """
                SELECT count(*)::integer AS n FROM seat_states s JOIN holds h ON h.hold_id = s.hold_id
                 WHERE s.state = 'held' AND h.user_id = 'greedy'
                """
            )
            return (
                outcomes.filter { $0 == "created" }.count, outcomes.filter { $0 == "seat_limit" }.count, held
            )
        }
    }

    @Test("50 concurrent one-seat holds by one user, limit 10: exactly 10 are created, 40 refused, 10 seats held")
    func limitHoldsUnderRace() throws {
        let result = try storm(
            """
            SELECT (r.result).outcome FROM inventory_hold_idempotent($1, $2, $3::text[], $4, NULL, NULL, $5, false,
                                                                     $6, false) r
            """
        )
        print("seat limit storm (advisory lock): \(result)")
        #expect(result.created == Self.limit)
        #expect(result.refused == Self.attempts - Self.limit)
        #expect(result.held == Self.limit)
    }

    /// CONTROL: the same count and claim without the lock (a function made in this test's scratch database
    /// only). Concurrent holds count before the others commit, so more than the limit get through: the storm
    /// above would fail if the lock were gone.
    @Test("CONTROL: without the (user, showtime) lock the same storm lets more than 10 through")
    func controlWithoutLockIsCaught() throws {
        let result = try storm(
            "SELECT (control_hold_unlocked($1, $2, $3::text[], $4, $5, $6)).outcome",
            prepare: Self.unlockedHold
        )
        print("CONTROL seat limit storm (no lock): \(result)")
        #expect(result.created > Self.limit, "control: the storm catches a count made without the lock")
        #expect(result.held == result.created)
    }

    /// `inventory_hold_limited` of migration 7 without its `pg_advisory_xact_lock`.
    static let unlockedHold = """
        CREATE FUNCTION control_hold_unlocked(p_hold_id text, p_showtime_id text, p_seat_ids text[], p_user_id text,
                                              p_ttl_seconds integer, p_max_seats integer)
        RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
        DECLARE
            v_held integer;
        BEGIN
            v_held := inventory_seats_held(p_user_id, p_showtime_id, false);
            IF v_held + cardinality(p_seat_ids) > p_max_seats THEN
                RETURN inventory_outcome('seat_limit');
            END IF;
            RETURN inventory_hold(p_hold_id, p_showtime_id, p_seat_ids, p_user_id, NULL, NULL, p_ttl_seconds);
        END $$;
        """

    @Test("the limit's refusal is stored for a caller's key and replayed with its limit and held")
    func refusalStored() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            try f.define("show", ["A1", "A2", "A3"])
            let limit = SeatLimit(maxSeatsPerUser: 2)
            let first = try f.store.hold(
                holdID: StoreFixture.newHoldID(),
                request: HoldRequest(showtimeId: "show", seatIds: ["A1", "A2"], userId: "u"),
                ttlSeconds: 300,
                seatLimit: limit
            )
            #expect(first.createdHold != nil)
            let request = HoldRequest(showtimeId: "show", seatIds: ["A3"], userId: "u", idempotencyKey: "k")
            let refused = try f.store.decideHold(
                holdID: StoreFixture.newHoldID(),
                request: request,
                key: .caller("k"),
                ttlSeconds: 300,
                seatLimit: limit
            )
            #expect(refused == HoldDecision(outcome: .seatLimitReached(limit: 2, held: 2), replayed: false))
            // With the limit lifted, the key still answers what it answered.
            let again = try f.store.decideHold(
                holdID: StoreFixture.newHoldID(),
                request: request,
                key: .caller("k"),
                ttlSeconds: 300,
                seatLimit: nil
            )
            #expect(again == HoldDecision(outcome: .seatLimitReached(limit: 2, held: 2), replayed: true))
            #expect(try f.int("SELECT count(*)::integer AS n FROM holds") == 1)
        }
    }
}
