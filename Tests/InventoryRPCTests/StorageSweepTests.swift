import Foundation
import Logging
import PostgresClient
import RedisClient
import TestSupport
import Testing

@testable import InventoryRPC

/// The set-based sweep (migration 11, decision 0021) over thousands of holds at once: every rule the
/// row-by-row sweep kept (rule 3, rule 8's exact seats and versions, seat history, hold.extended, one
/// hold.expired per hold with several sweepers) checked on the database after the sweep.
@Suite("Storage: set-based sweep", .serialized)
struct StorageSweepTests {
    /// What `plant` made: the holds that must be swept, the extended ones that must not, the re-takers.
    struct Planted {
        var dead: Set<String>
        var extended: Set<String>
        var retaken: Int
    }

    /// `count` holds of 1-3 seats (every other one naming its seats in descending order), made by the hold
    /// function itself so each has its hold.created, versions and history, in one transaction with a 2 s TTL;
    /// every 50th is then extended (hold.extended, live for minutes). Once the others are dead by the database
    /// clock, a newer hold takes the first seat of every 7th dead one (all of it when it had one seat), so its
    /// hold.expired must name fewer seats, or none.
    static func plant(_ f: StoreFixture, count: Int) throws -> Planted {
        try f.define("show", (1...(2 * count + 10)).map { "S\($0)" })
        let extended: [String] = try f.connection.transaction { connection in
            let created = try connection.query(
                """
                WITH plan AS (
                    SELECT g, 1 + g % 3 AS k, sum(1 + g % 3) OVER (ORDER BY g) - (1 + g % 3) AS first
                      FROM generate_series(1, $1::int) g)
                SELECT count(*)::int AS n
                  FROM plan p
                 CROSS JOIN LATERAL inventory_hold('dead-' || p.g, 'show',
                     ARRAY(SELECT 'S' || (p.first + j) FROM generate_series(1, p.k) j
                            ORDER BY CASE WHEN p.g % 2 = 0 THEN -j ELSE j END),
                     'user-' || (p.g % 97), NULL, NULL, 2) r
                 WHERE r.outcome = 'created'
                """,
                [count]
            ).rows[0].decode("n", as: Int.self)
            guard created == count else { throw TestFailure("planted \(created) of \(count) holds") }
            return try connection.query(
                """
                SELECT 'dead-' || g AS hold_id
                  FROM generate_series(50, $1::int, 50) g
                 CROSS JOIN LATERAL inventory_extend_hold('dead-' || g, NULL, 300, 3600) r
                 WHERE r.outcome = 'ok'
                """,
                [count]
            ).rows.map { try $0.decode("hold_id", as: String.self) }
        }
        guard extended.count == count / 50 else { throw TestFailure("extended \(extended.count) of \(count / 50)") }
        // Wait on the database clock, the one that decides.
        try f.connection.query(
            """
            SELECT pg_sleep(greatest(0, extract(epoch FROM (SELECT max(expires_at) FROM holds
                                                             WHERE hold_id <> ALL ($1::text[])) - now()) + 0.05))
            """,
            [extended]
        )
        let retaken = try f.int(
            """
            SELECT count(*)::int AS n
              FROM holds h
             CROSS JOIN LATERAL inventory_hold('new-' || h.hold_id, 'show', ARRAY[h.seat_ids[1]], 'user-new', NULL,
                                               NULL, 300) r
             WHERE h.hold_id LIKE 'dead-%' AND substr(h.hold_id, 6)::int % 7 = 0 AND h.hold_id <> ALL ($1::text[])
               AND r.outcome = 'created'
            """,
            [extended]
        )
        let all = Set((1...count).map { "dead-\($0)" })
        let live = Set(extended)
        guard retaken == (1...count).filter({ $0 % 7 == 0 && !live.contains("dead-\($0)") }).count else {
            throw TestFailure("re-took \(retaken) seats")
        }
        return Planted(dead: all.subtracting(live), extended: live, retaken: retaken)
    }

    /// Everything that must hold after the sweep, as a list of problems (empty when right).
    static func problems(_ f: StoreFixture, _ planted: Planted, swept: [ExpiredHold]) throws -> [String] {
        var found: [String] = []
        func check(_ what: String, _ sql: String) throws {
            let n = try f.int(sql)
            if n != 0 { found.append("\(n) \(what)") }
        }
        let ids = swept.map(\.holdID)
        if Set(ids) != planted.dead {
            found.append("swept \(Set(ids).count) holds, not the \(planted.dead.count) dead")
        }
        if ids.count != Set(ids).count { found.append("\(ids.count - Set(ids).count) holds swept twice") }
        // What the sweep answers for the Redis locks: every seat of the hold, as the hold names them.
        let named = Dictionary(
            try f.connection.query("SELECT hold_id, seat_ids FROM holds WHERE hold_id LIKE 'dead-%'").rows.map {
                (try $0.decode("hold_id", as: String.self), try $0.decode("seat_ids", as: [String].self))
            },
            uniquingKeysWith: { first, _ in first }
        )
        let wrongSeats = swept.filter { $0.showtimeID != "show" || named[$0.holdID] != $0.seatIDs }
        if !wrongSeats.isEmpty { found.append("\(wrongSeats.count) swept holds answered with other seats") }

        try check(
            "holds in the wrong status",
            """
            SELECT count(*)::int AS n FROM holds h
             WHERE h.status <> CASE WHEN h.hold_id LIKE 'new-%' OR h.expires_at > now() THEN 'active' ELSE 'expired' END
            """
        )
        try check(
            "holds without exactly one hold.expired (or extended/new ones with one)",
            """
            WITH events AS (SELECT o.hold_id, count(*) AS n FROM outbox o WHERE o.event_type = 'hold.expired'
                             GROUP BY o.hold_id)
            SELECT count(*)::int AS n FROM holds h LEFT JOIN events e USING (hold_id)
             WHERE coalesce(e.n, 0) <> CASE WHEN h.status = 'expired' THEN 1 ELSE 0 END
            """
        )
        // The seats each dead hold still had: its seats in its order, less those a newer hold took.
        let expectedFreed = """
            SELECT h.hold_id, u.seat_id, u.n
              FROM holds h CROSS JOIN LATERAL unnest(h.seat_ids) WITH ORDINALITY u(seat_id, n)
             WHERE h.status = 'expired'
               AND NOT EXISTS (SELECT 1 FROM holds t WHERE t.hold_id = 'new-' || h.hold_id AND t.seat_ids[1] = u.seat_id)
            """
        try check(
            "hold.expired events that do not name exactly the seats the hold still had, in its order, at version 2",
            """
            WITH freed AS (\(expectedFreed)),
                 expected AS (SELECT f.hold_id, jsonb_agg(f.seat_id ORDER BY f.n) AS seat_ids,
                                     jsonb_object_agg(f.seat_id, 2) AS seat_versions
                                FROM freed f GROUP BY f.hold_id)
            SELECT count(*)::int AS n FROM outbox o LEFT JOIN expected x USING (hold_id)
             WHERE o.event_type = 'hold.expired'
               AND (o.payload -> 'seatIds' IS DISTINCT FROM coalesce(x.seat_ids, '[]'::jsonb)
                    OR o.payload -> 'seatVersions' IS DISTINCT FROM coalesce(x.seat_versions, '{}'::jsonb)
                    OR o.payload ->> 'eventId' <> o.event_id::text OR o.payload ->> 'holdId' <> o.hold_id)
            """
        )
        try check(
            "seat rows not as expected (freed: available v2; re-taken: the newer hold's, v3; extended: held v2; "
                + "never held: available v0)",
            """
            WITH freed AS (\(expectedFreed)),
                 taken AS (SELECT DISTINCT unnest(h.seat_ids) AS seat_id FROM holds h)
            SELECT count(*)::int AS n FROM seat_states s
             WHERE s.showtime_id = 'show' AND NOT (
                   (s.seat_id IN (SELECT seat_id FROM freed) AND s.state = 'available' AND s.hold_id IS NULL
                    AND s.version = 2)
                OR (s.state = 'held' AND s.hold_id LIKE 'new-%' AND s.version = 3)
                OR (s.state = 'held' AND s.hold_id LIKE 'dead-%' AND s.hold_expires_at > now() AND s.version = 2)
                OR (s.state = 'available' AND s.version = 0 AND s.seat_id NOT IN (SELECT seat_id FROM taken)))
            """
        )
        try check(
            "seats whose history is not exactly one entry per version 1...version",
            """
            SELECT count(*)::int AS n FROM seat_states s
             WHERE s.showtime_id = 'show'
               AND (SELECT count(DISTINCT e.version) FILTER (WHERE e.version BETWEEN 1 AND s.version)
                           || '/' || count(*)
                      FROM seat_history e WHERE e.showtime_id = s.showtime_id AND e.seat_id = s.seat_id)
                   <> s.version || '/' || s.version
            """
        )
        try check(
            "freed seats whose history lacks their expiry (v2, available, at the hold's expiresAt, by its event)",
            """
            WITH freed AS (\(expectedFreed))
            SELECT count(*)::int AS n FROM freed f
              JOIN holds h ON h.hold_id = f.hold_id
              JOIN outbox o ON o.hold_id = f.hold_id AND o.event_type = 'hold.expired'
             WHERE NOT EXISTS (SELECT 1 FROM seat_history e
                                WHERE e.showtime_id = 'show' AND e.seat_id = f.seat_id AND e.version = 2
                                  AND e.event_type = 'hold.expired' AND e.state = 'available'
                                  AND e.hold_id = f.hold_id AND e.occurred_at = h.expires_at
                                  AND e.event_id = o.event_id)
            """
        )
        try check(
            "re-taken seats whose history lacks the overtaken expiry (v2, no event) before the claim (v3)",
            """
            SELECT count(*)::int AS n FROM holds t
             WHERE t.hold_id LIKE 'new-%'
               AND (NOT EXISTS (SELECT 1 FROM seat_history e
                                 WHERE e.showtime_id = 'show' AND e.seat_id = t.seat_ids[1] AND e.version = 2 AND e.event_type = 'hold.expired'
                                   AND e.event_id IS NULL AND e.hold_id = substr(t.hold_id, 5))
                    OR NOT EXISTS (SELECT 1 FROM seat_history e
                                    WHERE e.showtime_id = 'show' AND e.seat_id = t.seat_ids[1] AND e.version = 3
                                      AND e.event_type = 'hold.created' AND e.hold_id = t.hold_id))
            """
        )
        // A consumer applying every event by version ends where the rows are (rule 8), and no two events
        // give a seat the same version.
        try check(
            "(seat, version) pairs given by two events",
            """
            SELECT count(*)::int AS n FROM (
                SELECT v.key, v.value FROM outbox o CROSS JOIN LATERAL jsonb_each_text(o.payload -> 'seatVersions') v
                 GROUP BY 1, 2 HAVING count(*) > 1) d
            """
        )
        try check(
            "seats where the newest event disagrees with the row",
            """
            WITH ev AS (
                SELECT DISTINCT ON (v.key) v.key AS seat_id, v.value::bigint AS version, o.event_type
                  FROM outbox o CROSS JOIN LATERAL jsonb_each_text(o.payload -> 'seatVersions') v
                 ORDER BY v.key, v.value::bigint DESC)
            SELECT count(*)::int AS n FROM seat_states s LEFT JOIN ev USING (seat_id)
             WHERE s.showtime_id = 'show'
               AND (coalesce(ev.version, 0) <> s.version
                    OR CASE WHEN ev.event_type IN ('hold.created', 'hold.extended') THEN 'held' ELSE 'available' END
                       <> s.state)
            """
        )
        return found
    }

    /// Sweeps with `sweepers` threads at once, each on its own connection, in batches of `batch` until the
    /// queue is empty. Returns what each swept, or the errors they met.
    static func sweep(_ url: String, sweepers: Int, batch: Int) throws -> [Result<[ExpiredHold], TestFailure>] {
        try onThreads(sweepers) { _, start in
            let f = try StoreFixture(url)
            start()
            var mine: [ExpiredHold] = []
            do {
                while true {
                    let swept = try f.store.expireDueHolds(batchSize: batch)
                    mine += swept
                    if swept.isEmpty { break }
                }
            } catch {
                return .failure(TestFailure("\(error)"))
            }
            return .success(mine)
        }
    }

    @Test(
        "5,000 dead holds swept in batches of 100, a seventh of them partly or wholly re-taken, every 50th extended: each swept once, events, seat rows, versions and history exact"
    )
    func manyHolds() throws {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            let planted = try Self.plant(f, count: 5_000)
            var swept: [ExpiredHold] = []
            var batches = 0
            while true {
                let batch = try f.store.expireDueHolds(batchSize: 100)
                swept += batch
                batches += 1
                #expect(batch.count <= 100)
                if batch.count < 100 { break }
            }
            #expect(batches == planted.dead.count / 100 + 1)
            #expect(try f.store.expireDueHolds(batchSize: 100).isEmpty)
            let found = try Self.problems(f, planted, swept: swept)
            #expect(found.isEmpty, "\(found)")
            // The wholly re-taken one-seat holds still get their hold.expired, naming no seat (decision 0012).
            #expect(
                try f.int(
                    """
                    SELECT count(*)::int AS n FROM outbox
                     WHERE event_type = 'hold.expired' AND payload -> 'seatIds' = '[]'::jsonb
                       AND payload -> 'seatVersions' = '{}'::jsonb
                    """
                ) == (1...5_000).filter { $0 % 21 == 0 && $0 % 50 != 0 }.count
            )
        }
    }

    /// Two sweepers at once over 2,000 dead holds (some re-taken, some extended), batches of 25.
    static func twoSweepers(control: Bool) throws -> (errors: [String], problems: [String]) {
        try withTestDatabase { url in
            let f = try StoreFixture(url)
            if control {
                // The sweep without its hold row locks: both sweepers take the same due holds.
                let sql = try #require(Migrations.all.first { $0.version == 11 }).sql
                let unlocked = sql.replacingOccurrences(of: "FOR UPDATE SKIP LOCKED", with: "")
                    .replacingOccurrences(of: "CREATE FUNCTION", with: "CREATE OR REPLACE FUNCTION")
                #expect(sql.contains("FOR UPDATE SKIP LOCKED") && !unlocked.contains("FOR UPDATE SKIP LOCKED"))
                try f.connection.simpleQuery(unlocked)
            }
            let planted = try Self.plant(f, count: 2_000)
            let results = try Self.sweep(url, sweepers: 2, batch: 25)
            var errors: [String] = []
            var swept: [ExpiredHold] = []
            for result in results {
                switch result {
                case .success(let mine): swept += mine
                case .failure(let error): errors.append(error.description)
                }
            }
            if errors.isEmpty {
                // Both must have done part of the work, or this was not a race.
                #expect(results.allSatisfy { (try? $0.get().isEmpty) == false })
            }
            return (errors, try Self.problems(f, planted, swept: swept))
        }
    }

    @Test("two sweepers at once over 2,000 dead holds: every hold swept once by one of them, the same exact results")
    func twoSweepersAtOnce() throws {
        let (errors, found) = try Self.twoSweepers(control: false)
        #expect(errors.isEmpty, "\(errors)")
        #expect(found.isEmpty, "\(found)")
    }

    @Test("control: two sweepers without the hold row locks collide (the test above catches its race)")
    func twoSweepersControl() throws {
        let (errors, found) = try Self.twoSweepers(control: true)
        #expect(!errors.isEmpty || !found.isEmpty)
    }

    @Test("the sweep's Redis pipeline deletes each swept hold's own locks and no other hold's")
    func pipelinedLockDeletes() throws {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let metrics = ServiceMetrics()
        let locks = SeatLocks(
            url: "redis://localhost:6379",
            commandTimeout: .seconds(5),
            circuit: RedisCircuit(logger: logger, metrics: metrics),
            metrics: metrics,
            owner: "test",
            logger: logger
        )
        defer { locks.close() }
        let redis = try RedisConnection(url: "redis://localhost:6379", commandTimeout: .seconds(5), logger: logger)
        defer { redis.close() }
        let showtime = "sweep-test-" + UUID().uuidString.lowercased()
        let holds = (1...50).map { ExpiredHold(holdID: "h\($0)", showtimeID: showtime, seatIDs: ["a\($0)", "b\($0)"]) }
        for hold in holds {
            #expect(
                locks.acquire(showtimeID: showtime, seatIDs: hold.seatIDs, holdID: hold.holdID, ttlMilliseconds: 60_000)
                    == .acquired
            )
        }
        // A seat of h1 whose lock another hold has since taken keeps that hold's lock.
        let stolen = SeatLocks.lockKey(showtimeID: showtime, seatID: "b1")
        try redis.command(["SET", stolen, "other", "PX", "60000"])
        defer { _ = try? redis.command(["DEL", stolen]) }

        #expect(locks.releaseAll(holds + [ExpiredHold(holdID: "h0", showtimeID: showtime, seatIDs: [])]) == 0)
        for hold in holds {
            for seat in hold.seatIDs {
                let value = try redis.command(["GET", SeatLocks.lockKey(showtimeID: showtime, seatID: seat)])
                if seat == "b1" {
                    #expect(value == .string("other"))
                } else {
                    #expect(value == .null, "\(seat)")
                }
            }
        }
    }
}

@Suite("Sweep batch size")
struct SweepBatchSizeTests {
    @Test(
        "a batch slower than the target shrinks the next to what the target would have held; a fast full one grows it, at most twice"
    )
    func tuning() {
        var size = SweepBatchSize(minimum: 10, maximum: 1000, target: .milliseconds(5), initial: 50)
        #expect(size.current == 50)
        size.record(count: 50, took: .milliseconds(10))
        #expect(size.current == 25)
        size.record(count: 25, took: .milliseconds(1))
        #expect(size.current == 50, "at most twice the last size")
        size.record(count: 50, took: .microseconds(4_000))
        #expect(size.current == 62)
        // A short batch (the queue ran dry) never grows it, but a slow one shrinks it.
        size.record(count: 3, took: .microseconds(100))
        #expect(size.current == 62)
        size.record(count: 3, took: .milliseconds(3))
        #expect(size.current == 10, "never below the minimum")
        size.record(count: 0, took: .milliseconds(50))
        #expect(size.current == 10, "an empty batch says nothing")
        for _ in 0..<20 { size.record(count: size.current, took: .microseconds(100)) }
        #expect(size.current == 1000, "never above the maximum")
        #expect(SweepBatchSize(maximum: 20).current == 20)
    }
}
