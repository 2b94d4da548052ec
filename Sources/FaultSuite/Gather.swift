import AMQPClient
import Bench
import Contracts
import Foundation
import Logging
import PostgresClient

/// Collects what the checker needs once a run's load has ended and TTL + one sweep have passed: the
/// client history and fault log, the outbox drained to the broker, the events from the suite's own queue,
/// the database's rows, and the core's availability answers.
public struct GatherConfiguration: Sendable {
    public var databaseURL: String
    public var amqpURL: String
    public var historyPath: String
    public var faultsPath: String
    public var eventsLogPath: String
    public var showtimePrefix: String

    public init(
        databaseURL: String,
        amqpURL: String,
        historyPath: String,
        faultsPath: String,
        eventsLogPath: String,
        showtimePrefix: String
    ) {
        self.databaseURL = databaseURL
        self.amqpURL = amqpURL
        self.historyPath = historyPath
        self.faultsPath = faultsPath
        self.eventsLogPath = eventsLogPath
        self.showtimePrefix = showtimePrefix
    }
}

public enum Gather {
    public static func collect(_ configuration: GatherConfiguration, logger: Logger) throws -> CheckInput {
        let (history, skipped) = try readJSONLines(configuration.historyPath, as: Attempt.self)
        var (faults, _) = try readJSONLines(configuration.faultsPath, as: FaultRecord.self)
        let database = try PostgresConnection(url: configuration.databaseURL, logger: logger)
        defer { database.close() }

        // The relay publishes what committed; give it time to empty the outbox (it may be catching up after
        // the last fault), then count what is left: that is what a consumer would never see.
        var unpublished = 0
        let deadline = ContinuousClock.now + .seconds(60)
        repeat {
            unpublished = try database.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").rows[0]
                .decode("n", as: Int.self)
            if unpublished == 0 { break }
            Thread.sleep(forTimeInterval: 0.5)
        } while ContinuousClock.now < deadline

        // Per fault, the outbox lag back to 0: when the last event committed before the return was published.
        for index in faults.indices {
            guard let back = faults[index].returnMs else { continue }
            let row = try database.query(
                """
                SELECT (extract(epoch FROM max(published_at)) * 1000)::bigint AS last
                FROM outbox WHERE created_at < to_timestamp($1::bigint / 1000.0)
                """,
                [back]
            ).rows[0]
            if let last = try row.decode("last", as: Int64?.self) {
                faults[index].outboxDrainedMs = max(0, last - back)
            }
        }

        let (events, undecodable) = try EventQueue.drain(
            url: configuration.amqpURL,
            idle: .seconds(3),
            logPath: configuration.eventsLogPath,
            logger: logger
        )
        let snapshot = try DatabaseSnapshot.read(database, showtimePrefix: configuration.showtimePrefix)

        var keyed: [String: String] = [:]
        var decidedMs: [String: Int64] = [:]
        for row in try database.query(Self.keyedHoldsSQL(database)).rows {
            let holdID = try row.decode("hold_id", as: String.self)
            keyed[
                HistoryChecker.keyOf(
                    user: try row.decode("user_id", as: String.self),
                    key: try row.decode("idempotency_key", as: String.self)
                )
            ] = holdID
            if let decided = try row.decodeIfPresent("decided_ms", as: Int64.self) { decidedMs[holdID] = decided }
        }

        var seats: [FinalSeat] = []
        for row in try database.query(
            "SELECT showtime_id, seat_id, state, hold_id FROM seat_states WHERE starts_with(showtime_id, $1) ORDER BY showtime_id, position",
            [configuration.showtimePrefix]
        ).rows {
            seats.append(
                FinalSeat(
                    showtimeID: try row.decode("showtime_id", as: String.self),
                    seatID: try row.decode("seat_id", as: String.self),
                    state: try row.decode("state", as: String.self),
                    holdID: row["hold_id"],
                    availabilityState: nil
                )
            )
        }

        // The core's own answer for every showtime: it must agree with the rows (nothing held, sold seats sold).
        let caller = try RPCCaller(configuration: try AMQPConfiguration(url: configuration.amqpURL), logger: logger)
        defer { caller.close() }
        var answered: [String: SeatAvailability] = [:]
        for showtime in Set(seats.map(\.showtimeID)).sorted() {
            switch try caller.call(.availability, AvailabilityRequest(showtimeId: showtime), as: Availability.self) {
            case .success(let availability):
                for seat in availability.availability { answered["\(showtime)/\(seat.seatId)"] = seat }
            case .failure(let error):
                throw FaultSuiteError("availability of \(showtime) answered \(error.code.rawValue): \(error.message)")
            }
        }
        for index in seats.indices {
            let seat = answered["\(seats[index].showtimeID)/\(seats[index].seatID)"]
            seats[index].availabilityState = seat?.state.rawValue ?? "missing"
            seats[index].availabilityVersion = seat?.version
        }

        return CheckInput(
            history: history,
            historySkipped: skipped,
            faults: faults,
            snapshot: snapshot,
            keyedHolds: keyed,
            decidedMs: decidedMs,
            events: events,
            undecodableEvents: undecodable,
            unpublishedAtEnd: unpublished,
            finalSeats: seats
        )
    }

    /// (user, key) → hold, and when the hold was decided: from the idempotency records where the core keeps
    /// them (`idempotency_keys`, decision 0013), plus keys on the holds themselves (cores before it).
    static func keyedHoldsSQL(_ database: PostgresConnection) throws -> String {
        let legacy =
            "SELECT user_id, idempotency_key, hold_id, NULL::bigint AS decided_ms FROM holds WHERE idempotency_key IS NOT NULL"
        let records = try database.query("SELECT to_regclass('idempotency_keys') IS NOT NULL AS present").rows
        guard try records.first?.decode("present", as: Bool.self) == true else { return legacy }
        return """
            SELECT user_id, idempotency_key, hold_id,
                   floor(extract(epoch FROM decided_at) * 1000)::bigint AS decided_ms
              FROM idempotency_keys WHERE hold_id IS NOT NULL
            UNION ALL
            \(legacy) AND NOT EXISTS (SELECT 1 FROM idempotency_keys k
                                      WHERE k.user_id = holds.user_id AND k.idempotency_key = holds.idempotency_key)
            """
    }

}
