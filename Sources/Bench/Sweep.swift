import AMQPClient
import Foundation
import Logging
import PostgresClient

/// What `inventory-bench sweep` measured.
public struct SweepReport: Codable, Sendable {
    public var holds: Int
    /// From the holds' common expiresAt to the moment none of them was active any more (includes the wait
    /// for the core's next sweep tick: EXPIRY_INTERVAL_SECONDS).
    public var expiryToAllSweptSeconds: Double?
    /// From the first hold the sweep marked to the last (updated_at of the rows): the sweep's own work.
    public var sweepDurationSeconds: Double?
    /// From expiresAt until the last hold.expired event reached the bench.
    public var expiryToAllEventsSeconds: Double?
    public var expiredEventsReceived: Int
    public var load: String

    public func text() -> String {
        func s(_ value: Double?) -> String { value.map { String(format: "%.2f s", $0) } ?? "not within the wait" }
        return """
            sweep of \(holds) holds expiring at once: all swept \(s(expiryToAllSweptSeconds)) after expiresAt; \
            sweep work (first to last row marked) \(s(sweepDurationSeconds)); all \(expiredEventsReceived) \
            hold.expired events received \(s(expiryToAllEventsSeconds)) after expiresAt
            load: \(load)
            """
    }
}

/// Plants `count` one-seat holds that all expire at the same instant (straight into the core's tables,
/// as if they had been taken earlier: the rows the hold function writes, without their hold.created
/// events), then watches the running core's sweep mark them expired and publish `hold.expired`.
public enum SweepBench {
    public static func run(
        databaseURL: String,
        amqpURL: String,
        count: Int,
        expiresIn: Duration = .seconds(5),
        wait: Duration = .seconds(120),
        logger: Logger
    ) throws -> SweepReport {
        let runID = "bench-sweep-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        let showtime = runID + "-st0"
        let collector = try EventCollector(
            configuration: try AMQPConfiguration(url: amqpURL),
            showtimePrefix: runID + "-",
            logger: logger
        )
        defer { collector.stop() }
        let connection = try PostgresConnection(url: databaseURL, logger: logger)
        defer { connection.close() }
        try connection.query(
            "SELECT * FROM inventory_define_seats($1, ARRAY(SELECT 's' || g FROM generate_series(1, $2::int) g))",
            [showtime, count]
        )
        let expiresMs = Int64(Date().timeIntervalSince1970 * 1000) + Int64(expiresIn.components.seconds * 1000)
        try connection.transaction { connection in
            try connection.query(
                """
                INSERT INTO holds (hold_id, showtime_id, user_id, seat_ids, status, expires_at, created_at, updated_at)
                SELECT $1 || '-h' || g, $1, $1 || '-u' || g, ARRAY['s' || g], 'active',
                       to_timestamp($3::bigint / 1000.0), now(), now()
                  FROM generate_series(1, $2::int) g
                """,
                [showtime, count, expiresMs]
            )
            try connection.query(
                """
                UPDATE seat_states SET state = 'held', hold_id = $1 || '-h' || substr(seat_id, 2),
                       hold_expires_at = to_timestamp($2::bigint / 1000.0), updated_at = now()
                 WHERE showtime_id = $1
                """,
                [showtime, expiresMs]
            )
        }
        let expiresAt = Double(expiresMs) / 1000
        var swept: Double?
        var eventsDone: Double?
        let deadline = ContinuousClock.now + expiresIn + wait
        while ContinuousClock.now < deadline && (swept == nil || eventsDone == nil) {
            Thread.sleep(forTimeInterval: 0.05)
            let now = Date().timeIntervalSince1970
            if swept == nil {
                let active = try connection.query(
                    "SELECT count(*)::int AS n FROM holds WHERE showtime_id = $1 AND status = 'active'",
                    [showtime]
                ).rows[0].decode("n", as: Int.self)
                if active == 0 { swept = now - expiresAt }
            }
            if eventsDone == nil && collector.events.filter({ $0.type == "hold.expired" }).count >= count {
                eventsDone = now - expiresAt
            }
        }
        let row = try connection.query(
            """
            SELECT extract(epoch FROM max(updated_at) - min(updated_at))::float8 AS span
              FROM holds WHERE showtime_id = $1 AND status = 'expired'
            """,
            [showtime]
        ).rows[0]
        return SweepReport(
            holds: count,
            expiryToAllSweptSeconds: swept,
            sweepDurationSeconds: try row.decodeIfPresent("span", as: Double.self),
            expiryToAllEventsSeconds: eventsDone,
            expiredEventsReceived: Set(collector.events.filter { $0.type == "hold.expired" }.map(\.eventID)).count,
            load: loadAverage()
        )
    }
}
