import Contracts
import Foundation
import PostgresClient

/// The answer to a hold request, as the database decided it.
public enum HoldOutcome: Sendable, Hashable {
    case created(Hold)
    /// The user's idempotency key was seen with this very request: the hold it made, as it now stands.
    case replayed(Hold)
    /// Nothing was held; these requested seats are held by a live hold or purchased.
    case unavailable(seatIDs: [String])
    /// Seats the showtime's seat map does not have (in request order).
    case unknownSeats([String])
    /// The showtime has no seat map at all.
    case showtimeNotFound
    /// The user's idempotency key was first used with another request.
    case keyReused
}

/// The statement `InventoryStore.hold` prepares: the claim of migration 2 (`inventory_hold`). The
/// default below is the production one; the control build replaces it with a member of its own
/// (`ControlUnsafeClaim.swift`, the only file that reads `INVENTORY_CONTROL_UNSAFE_CLAIM`).
protocol ClaimStatement {
    static var claimSQL: String { get }
}

extension ClaimStatement {
    static var claimSQL: String { "SELECT * FROM inventory_hold($1, $2, $3::text[], $4, $5, $6, $7)" }
}

extension InventoryStore: ClaimStatement {}

/// A hold the expiry sweep marked `expired`: what the caller needs to delete its Redis locks.
public struct ExpiredHold: Sendable, Hashable {
    public var holdID: String
    public var showtimeID: String
    public var seatIDs: [String]

    public init(holdID: String, showtimeID: String, seatIDs: [String]) {
        self.holdID = holdID
        self.showtimeID = showtimeID
        self.seatIDs = seatIDs
    }
}

/// A committed outbox row not yet confirmed by the broker.
public struct OutboxEvent: Sendable, Hashable {
    /// The outbox row; increasing per hold in the order the events happened.
    public var id: Int64
    /// The event's `eventId` (a UUID): the AMQP `message_id` consumers de-duplicate by.
    public var eventID: String
    public var holdID: String
    /// The routing key: `hold.created`, `hold.released`, `hold.expired` or `seats.purchased`.
    public var type: String
    /// The event JSON body, exactly as INTERFACE.md specifies it.
    public var payload: [UInt8]

    public init(id: Int64, eventID: String, holdID: String, type: String, payload: [UInt8]) {
        self.id = id
        self.eventID = eventID
        self.holdID = holdID
        self.type = type
        self.payload = payload
    }
}

/// The storage of the inventory: every operation is one round trip to a PostgreSQL function (migration
/// 2) through a prepared statement. Owns one connection and is used by one thread at a time, like the
/// connection itself.
///
/// `throws` means the database could not answer (`PostgresError`: connection lost, server gone...);
/// the caller answers `SERVICE_UNAVAILABLE` and reconnects (a new connection, a new store). Business
/// outcomes are values, never errors. A deadlock or serialization failure is retried here (up to 3
/// attempts), since every operation is a single statement that either committed as a whole or not at all.
///
/// The writing operations run their own transaction and then wake the outbox relay (`outboxChannel`)
/// after the commit, in the same round trip: call them outside any transaction block. The schema must be
/// migrated (`Migrator`) before `init`, which prepares the statements.
public final class InventoryStore {
    public let connection: PostgresConnection

    /// The channel the outbox relay LISTENs on; notified (empty payload) after a write committed while
    /// unpublished events exist.
    public static let outboxChannel = "inventory_outbox"

    private enum Statement: String, CaseIterable {
        case hold = "inventory_store_hold"
        case findIdempotentHold = "inventory_store_find_idempotent_hold"
        case release = "inventory_store_release"
        case purchase = "inventory_store_purchase"
        case getHold = "inventory_store_get_hold"
        case availability = "inventory_store_availability"
        case defineSeats = "inventory_store_define_seats"
        case expireHolds = "inventory_store_expire_holds"
        case unpublishedEvents = "inventory_store_unpublished_events"
        case markPublished = "inventory_store_mark_published"
        case notifyRelay = "inventory_store_notify_relay"

        /// Operations that may write outbox rows: they commit, then wake the relay (see `run`).
        var writesEvents: Bool {
            switch self {
            case .hold, .release, .purchase, .expireHolds: true
            default: false
            }
        }

        var sql: String {
            switch self {
            case .hold: return InventoryStore.claimSQL
            case .findIdempotentHold:
                return """
                    SELECT (inventory_result(CASE WHEN h.request_hash = $3 THEN 'replayed' ELSE 'key_reused' END, h)).*
                      FROM holds h WHERE h.user_id = $1 AND h.idempotency_key = $2
                    """
            case .release: return "SELECT * FROM inventory_release($1, $2)"
            case .purchase: return "SELECT * FROM inventory_purchase($1, $2, $3)"
            case .getHold: return "SELECT * FROM inventory_get_hold($1)"
            case .availability: return "SELECT * FROM inventory_availability($1)"
            case .defineSeats: return "SELECT * FROM inventory_define_seats($1, $2::text[])"
            case .expireHolds: return "SELECT * FROM inventory_expire_holds($1)"
            case .unpublishedEvents:
                return """
                    SELECT o.id, o.event_id::text AS event_id, o.hold_id, o.event_type, o.payload::text AS payload
                      FROM outbox o WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1
                    """
            case .notifyRelay:
                return """
                    SELECT pg_notify('\(InventoryStore.outboxChannel)', '')
                      FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1) AS pending
                    """
            case .markPublished:
                return "UPDATE outbox SET published_at = now() WHERE id = ANY ($1::bigint[]) AND published_at IS NULL"
            }
        }
    }

    /// Prepares every statement on `connection` (once per connection).
    public init(connection: PostgresConnection) throws {
        self.connection = connection
        for statement in Statement.allCases {
            try connection.prepare(statement.rawValue, statement.sql)
        }
    }

    // MARK: Holds

    public func hold(holdID: String, request: HoldRequest, ttlSeconds: Int) throws -> HoldOutcome {
        let key = request.idempotencyKey
        let row = try single(
            .hold,
            [
                holdID, request.showtimeId, request.seatIds, request.userId, key,
                key.map { _ in RequestHash.of(request) },
                ttlSeconds,
            ]
        )
        switch try row.decode("outcome", as: String.self) {
        case "created": return .created(try Self.hold(from: row))
        case "replayed": return .replayed(try Self.hold(from: row))
        case "key_reused": return .keyReused
        case "unavailable": return .unavailable(seatIDs: try row.decode("problem_seat_ids", as: [String].self))
        case "unknown_seats": return .unknownSeats(try row.decode("problem_seat_ids", as: [String].self))
        case "showtime_not_found": return .showtimeNotFound
        case let other: throw Self.unexpected("inventory_hold", other)
        }
    }

    /// The hold an earlier request with this user's key made: `.replayed` (same request), `.keyReused`
    /// (another request), or nil when the key is new. Lets a caller answer a retry without taking locks;
    /// `hold` itself checks the key too, so this is an optimisation, never a requirement.
    public func findIdempotentHold(userID: String, key: String, request: HoldRequest) throws -> HoldOutcome? {
        let rows = try run(.findIdempotentHold, [userID, key, RequestHash.of(request)]).rows
        guard let row = rows.first else { return nil }
        switch try row.decode("outcome", as: String.self) {
        case "replayed": return .replayed(try Self.hold(from: row))
        default: return .keyReused
        }
    }

    public func release(_ request: ReleaseRequest) throws -> Result<Hold, ErrorBody> {
        try holdResult(.release, [request.holdId, request.userId], holdID: request.holdId)
    }

    public func purchase(_ request: PurchaseRequest) throws -> Result<Hold, ErrorBody> {
        try holdResult(.purchase, [request.holdId, request.orderId, request.userId], holdID: request.holdId)
    }

    public func hold(id: String) throws -> Result<Hold, ErrorBody> {
        try holdResult(.getHold, [id], holdID: id)
    }

    // MARK: Seats

    public func availability(showtimeID: String) throws -> Result<Availability, ErrorBody> {
        let rows = try run(.availability, [showtimeID]).rows
        guard !rows.isEmpty else { return .failure(Self.showtimeNotFound(showtimeID)) }
        var seats: [SeatAvailability] = []
        seats.reserveCapacity(rows.count)
        var summary = AvailabilitySummary(available: 0, held: 0, purchased: 0)
        for row in rows {
            let state = try Self.enumValue(row, "state", as: SeatState.self)
            switch state {
            case .available: summary.available += 1
            case .held: summary.held += 1
            case .purchased: summary.purchased += 1
            }
            seats.append(
                SeatAvailability(
                    seatId: try row.decode("seat_id", as: String.self),
                    state: state,
                    holdExpiresAt: try row.decodeIfPresent("hold_expires_at_ms", as: Int64.self).map(Self.date)
                )
            )
        }
        return .success(Availability(showtimeId: showtimeID, availability: seats, summary: summary))
    }

    public func defineSeats(_ request: SeatsDefineRequest) throws -> SeatsDefined {
        let row = try single(.defineSeats, [request.showtimeId, request.seatIds])
        let defined = SeatsDefined(
            showtimeId: request.showtimeId,
            seatCount: try row.decode("seat_count", as: Int.self),
            added: try row.decode("added", as: Int.self)
        )
        if defined.added > 0 {
            // A showtime provisioned minutes before its rush is unknown to the planner until autovacuum
            // analyzes: it estimates one row and scans every seat of the showtime on each hold and sweep
            // step (2-3x slower holds, 100x slower sweeps; BENCHMARKS.md). Seat maps change rarely, so
            // refreshing the statistics right away is cheap.
            try connection.query("ANALYZE seat_states")
        }
        return defined
    }

    // MARK: Expiry

    /// Marks up to `batchSize` dead holds `expired` (oldest first), frees their seats and writes one
    /// `hold.expired` each. Holds another sweeper, purchase or release is working on are skipped, so
    /// concurrent sweepers never expire a hold twice. Call again while it returns a full batch.
    public func expireDueHolds(batchSize: Int) throws -> [ExpiredHold] {
        try run(.expireHolds, [batchSize]).rows.map { row in
            ExpiredHold(
                holdID: try row.decode("hold_id", as: String.self),
                showtimeID: try row.decode("showtime_id", as: String.self),
                seatIDs: try row.decode("seat_ids", as: [String].self)
            )
        }
    }

    // MARK: Outbox

    /// Committed, unpublished events, oldest first (so in order per hold).
    public func unpublishedEvents(limit: Int) throws -> [OutboxEvent] {
        try run(.unpublishedEvents, [limit]).rows.map { row in
            OutboxEvent(
                id: try row.decode("id", as: Int64.self),
                eventID: try row.decode("event_id", as: String.self),
                holdID: try row.decode("hold_id", as: String.self),
                type: try row.decode("event_type", as: String.self),
                payload: Array(try row.decode("payload", as: String.self).utf8)
            )
        }
    }

    /// Marks events published (after the broker confirmed them). Marking one twice is harmless.
    public func markPublished(ids: [Int64]) throws {
        guard !ids.isEmpty else { return }
        try run(.markPublished, [ids])
    }

    // MARK: Plumbing

    private static let retriedStates: Set<String> = ["40P01", "40001"]  // deadlock, serialization failure

    @discardableResult
    private func run(_ statement: Statement, _ parameters: [(any PostgresEncodable)?]) throws -> PostgresResult {
        var attempt = 1
        while true {
            let outcome = Result { () throws(PostgresError) -> PostgresResult in
                statement.writesEvents
                    ? try executeThenNotify(statement, parameters)
                    : try connection.execute(prepared: statement.rawValue, parameters)
            }
            switch outcome {
            case .success(let result):
                return result
            case .failure(let error):
                guard attempt < 3, let state = error.sqlState, Self.retriedStates.contains(state) else { throw error }
                attempt += 1
            }
        }
    }

    /// One round trip, two transactions: the operation (BEGIN, the function, COMMIT), then the relay's wake-up
    /// in a transaction of its own. NOTIFY inside the writing transaction would hold PostgreSQL's cluster-wide
    /// notify lock through the commit flush and serialize every write (decision 0002, Benchmark); on its own,
    /// after the commit, it costs nothing measurable, and the relay still hears of the event within
    /// milliseconds. All four messages are sent before any answer is read, so the NOTIFY runs even if this
    /// process dies right after sending; only a server crash between the two commits can skip it, and the
    /// relay's fallback poll covers that.
    private func executeThenNotify(
        _ statement: Statement,
        _ parameters: [(any PostgresEncodable)?]
    ) throws(PostgresError) -> PostgresResult {
        let outcomes = try connection.pipeline([
            .query("BEGIN"),
            .prepared(statement.rawValue, parameters),
            .query("COMMIT"),
            .prepared(Statement.notifyRelay.rawValue),
        ])
        // The operation's own error first (it decides whether a retry can help), then BEGIN's or COMMIT's.
        for index in [1, 0, 2] {
            if case .failure(let error) = outcomes[index] { throw error }
        }
        // A failed NOTIFY (the operation committed) only delays the relay until its next poll.
        return try outcomes[1].get()
    }

    private func single(_ statement: Statement, _ parameters: [(any PostgresEncodable)?]) throws -> PostgresRow {
        guard let row = try run(statement, parameters).rows.first else {
            throw PostgresError(
                kind: .protocolError,
                message: "\(statement.rawValue) returned no row",
                sqlState: nil,
                detail: nil,
                constraint: nil,
                isRetryable: false
            )
        }
        return row
    }

    private func holdResult(
        _ statement: Statement,
        _ parameters: [(any PostgresEncodable)?],
        holdID: String
    ) throws -> Result<Hold, ErrorBody> {
        let row = try single(statement, parameters)
        switch try row.decode("outcome", as: String.self) {
        case "ok": return .success(try Self.hold(from: row))
        case "not_found":
            return .failure(
                ErrorBody(code: .holdNotFound, message: "Hold not found", details: ["holdId": .string(holdID)])
            )
        case "not_owned":
            return .failure(
                ErrorBody(
                    code: .holdNotOwned,
                    message: "The hold belongs to another user",
                    details: ["holdId": .string(holdID)]
                )
            )
        case "not_active":
            return .failure(
                ErrorBody(code: .holdNotActive, message: "The hold is not active", details: ["holdId": .string(holdID)])
            )
        case "expired":
            return .failure(
                ErrorBody(code: .holdExpired, message: "The hold has expired", details: ["holdId": .string(holdID)])
            )
        case let other: throw Self.unexpected(statement.rawValue, other)
        }
    }

    private static func showtimeNotFound(_ showtimeID: String) -> ErrorBody {
        ErrorBody(code: .showtimeNotFound, message: "Showtime not found", details: ["showtimeId": .string(showtimeID)])
    }

    static func hold(from row: PostgresRow) throws -> Hold {
        Hold(
            holdId: try row.decode("hold_id", as: String.self),
            showtimeId: try row.decode("showtime_id", as: String.self),
            userId: try row.decode("user_id", as: String.self),
            seatIds: try row.decode("seat_ids", as: [String].self),
            status: try enumValue(row, "status", as: HoldStatus.self),
            expiresAt: date(try row.decode("expires_at_ms", as: Int64.self)),
            orderId: try row.decodeIfPresent("order_id", as: String.self)
        )
    }

    /// Database times travel as epoch milliseconds: exact (expiry times are whole seconds).
    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    private static func enumValue<T: RawRepresentable>(_ row: PostgresRow, _ column: String, as: T.Type) throws -> T
    where T.RawValue == String {
        let raw = try row.decode(column, as: String.self)
        guard let value = T(rawValue: raw) else {
            throw PostgresError(
                kind: .decoding,
                message: "unexpected \(column) '\(raw)'",
                sqlState: nil,
                detail: nil,
                constraint: nil,
                isRetryable: false
            )
        }
        return value
    }

    private static func unexpected(_ function: String, _ outcome: String) -> PostgresError {
        PostgresError(
            kind: .decoding,
            message: "\(function) answered an unknown outcome '\(outcome)'",
            sqlState: nil,
            detail: nil,
            constraint: nil,
            isRetryable: false
        )
    }
}
