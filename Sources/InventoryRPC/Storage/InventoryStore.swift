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
    /// A best-available hold found no suitable set of `quantity` free seats.
    case noSuitableSeats(quantity: Int)
    /// Nothing was held: the hold would take the user past `limit` seats of the showtime; `held` are the seats
    /// the user has in live holds (and purchased ones, when they count) as the database counted them.
    case seatLimitReached(limit: Int, held: Int)
}

/// `MAX_SEATS_PER_USER` and `SEAT_LIMIT_COUNTS_PURCHASED`: the most seats of one showtime a user may have
/// in live holds (and purchased, when `countsPurchased`), counted by the database in the claiming
/// transaction (migration 7, decision 0015).
public struct SeatLimit: Sendable, Hashable {
    public var maxSeatsPerUser: Int
    public var countsPurchased: Bool

    public init(maxSeatsPerUser: Int, countsPurchased: Bool = false) {
        self.maxSeatsPerUser = maxSeatsPerUser
        self.countsPurchased = countsPurchased
    }
}

/// A hold decided by the database, and whether the answer is an earlier request's, given again.
public struct HoldDecision: Sendable, Hashable {
    public var outcome: HoldOutcome
    /// The answer stored for this idempotency key by an earlier request (a hold as it now stands, or the
    /// refusal as it was): the reply carries `x-idempotent-replayed: true`.
    public var replayed: Bool

    public init(outcome: HoldOutcome, replayed: Bool) {
        self.outcome = outcome
        self.replayed = replayed
    }
}

/// The key a hold is decided under (INTERFACE.md rule 9, decision 0013).
public enum HoldKey: Sendable, Hashable {
    /// The caller's `idempotencyKey`: its first answer, success or refusal, is kept.
    case caller(String)
    /// Made by the core from the broker delivery (`RequestHandler.derivedKey`): kept for successes only, so
    /// a redelivery of a request that committed replays it.
    case derived(String)

    var text: String {
        switch self {
        case .caller(let key), .derived(let key): key
        }
    }

    var isDerived: Bool {
        if case .derived = self { return true }
        return false
    }
}

/// The claim of named seats: the idempotent claim of migrations 6 and 7 (`inventory_hold_idempotent`, around
/// the seat limit's `inventory_hold_limited` and migration 2's `inventory_hold`), which `inventory_hold_batch`
/// (migration 12) runs per request. The default below is the production
/// one; the control build replaces it with a member of its own (`ControlUnsafeClaim.swift`, the only file that
/// reads `INVENTORY_CONTROL_UNSAFE_CLAIM`).
protocol ClaimStatement {
    static var claimSQL: String { get }
}

extension ClaimStatement {
    static var claimSQL: String { productionClaimSQL }
}

/// The production claim (`ClaimStatement`): what `inventory_hold_batch` runs per request of named seats when
/// it is not given another (`InventoryStore.batchClaimSQL`).
let productionClaimSQL =
    "SELECT r.replayed, (r.result).* FROM inventory_hold_idempotent($1, $2, $3::text[], $4, $5, $6, $7, $8, $9, $10) r"

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
    /// Hold requests of group commits decided again after a deadlock or serialization failure rolled them
    /// back (`decideHolds`): 0 unless locks were taken out of order somewhere.
    public internal(set) var retriedRequests = 0

    /// The channel the outbox relay LISTENs on; notified (empty payload) after a write committed while
    /// unpublished events exist.
    public static let outboxChannel = "inventory_outbox"

    enum Statement: String, CaseIterable {
        case holdBatch = "inventory_store_hold_batch"
        case findIdempotentHold = "inventory_store_find_idempotent_hold"
        case setTimeouts = "inventory_store_set_timeouts"
        case deadlineCheck = "inventory_store_deadline_check"
        case purgeIdempotency = "inventory_store_purge_idempotency"
        case release = "inventory_store_release"
        case purchase = "inventory_store_purchase"
        case getHold = "inventory_store_get_hold"
        case availability = "inventory_store_availability"
        case expireHolds = "inventory_store_expire_holds"
        case unpublishedEvents = "inventory_store_unpublished_events"
        case markPublished = "inventory_store_mark_published"
        case notifyRelay = "inventory_store_notify_relay"
        // Venue features (issue 15).
        case extend = "inventory_store_extend"
        case defineSeatMap = "inventory_store_define_seat_map"
        case seatHistory = "inventory_store_seat_history"
        case purgeSeatHistory = "inventory_store_purge_seat_history"
        // The availability read path (issue 16 item 4, migration 13).
        case availabilitySince = "inventory_store_availability_since"
        case pruneAvailabilityChanges = "inventory_store_prune_availability_changes"

        /// Operations that may write outbox rows: they commit, then wake the relay (see `run`).
        var writesEvents: Bool {
            switch self {
            case .release, .purchase, .expireHolds, .extend: true
            default: false
            }
        }

        var sql: String {
            switch self {
            case .holdBatch:
                return """
                    SELECT b.ord, b.deferred, b.error_state, b.error_message, b.replayed, (b.result).*
                      FROM inventory_hold_batch($1::jsonb, $2, $3) b
                    """
            case .findIdempotentHold:
                return "SELECT a.replayed, (a.result).* FROM inventory_idempotent_answer($1, $2, $3) a"
            case .setTimeouts:
                return "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true)"
            case .deadlineCheck: return "SELECT inventory_deadline_check($1)"
            case .purgeIdempotency: return "SELECT inventory_purge_idempotency($1, $2) AS deleted"
            case .release: return "SELECT * FROM inventory_release($1, $2)"
            case .purchase: return "SELECT * FROM inventory_purchase($1, $2, $3)"
            case .getHold: return "SELECT * FROM inventory_get_hold($1, $2)"
            case .availability: return "SELECT * FROM inventory_availability($1)"
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
            case .extend: return "SELECT * FROM inventory_extend_hold($1, $2, $3, $4)"
            case .defineSeatMap: return "SELECT * FROM inventory_define_seat_map($1, $2::jsonb)"
            case .seatHistory: return "SELECT * FROM inventory_seat_history($1, $2, $3, $4)"
            case .purgeSeatHistory: return "SELECT inventory_purge_seat_history($1, $2) AS deleted"
            case .availabilitySince: return "SELECT * FROM inventory_availability_since($1, $2)"
            case .pruneAvailabilityChanges: return "SELECT inventory_availability_prune() AS deleted"
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

    /// A hold under the request's own `idempotencyKey` (if any). See `decideHold`.
    public func hold(
        holdID: String,
        request: HoldRequest,
        ttlSeconds: Int,
        seatLimit: SeatLimit? = nil,
        deadline: Int64? = nil
    ) throws
        -> HoldOutcome
    {
        try decideHold(
            holdID: holdID,
            request: request,
            key: request.idempotencyKey.map(HoldKey.caller),
            ttlSeconds: ttlSeconds,
            seatLimit: seatLimit,
            deadline: deadline
        ).outcome
    }

    /// One hold, decided and (with a key) recorded in one transaction. A caller's key that was seen before
    /// answers what it answered then (`replayed`), or `.keyReused` for another request; a concurrent request
    /// with the key waits in the database until the first one's transaction ends. With a `deadline` (Unix
    /// epoch milliseconds), see `transaction`: past it, nothing commits and this throws (`isDeadlineError`).
    /// With a `seatLimit`, a hold that would take the user past it is `.seatLimitReached` (nil: no limit).
    public func decideHold(
        holdID: String,
        request: HoldRequest,
        key: HoldKey?,
        ttlSeconds: Int,
        seatLimit: SeatLimit? = nil,
        deadline: Int64? = nil
    ) throws -> HoldDecision {
        try decideAlone(
            HoldBatchRequest(kind: .seats(request), holdID: holdID, key: key, deadline: deadline),
            ttlSeconds: ttlSeconds,
            seatLimit: seatLimit
        )
    }

    /// The answer stored for `key` (a hold as it now stands or a refusal, `replayed`; `.keyReused` for another
    /// request), or nil when none is (the key is new, or its first request has not committed yet). Lets a
    /// retry be answered without locks or Redis; `decideHold` checks the key itself, so this is an
    /// optimisation, never a requirement. For a derived key, only a replay counts (a message id reused for
    /// another request is not a redelivery).
    public func findIdempotentAnswer(userID: String, key: HoldKey, request: HoldRequest) throws -> HoldDecision? {
        try findIdempotentAnswer(userID: userID, key: key, requestHash: RequestHash.of(request), quantity: nil)
    }

    /// `findIdempotentAnswer` for a best-available hold.
    public func findIdempotentAnswer(
        userID: String,
        key: HoldKey,
        request: BestAvailableHoldRequest
    ) throws -> HoldDecision? {
        try findIdempotentAnswer(
            userID: userID,
            key: key,
            requestHash: RequestHash.of(request),
            quantity: request.quantity
        )
    }

    private func findIdempotentAnswer(
        userID: String,
        key: HoldKey,
        requestHash: String,
        quantity: Int?
    ) throws -> HoldDecision? {
        let rows = try run(.findIdempotentHold, [userID, key.text, requestHash]).rows
        guard let row = rows.first else { return nil }
        let decision = try Self.decision(from: row, quantity: quantity)
        if key.isDerived && !decision.replayed { return nil }
        return decision
    }

    /// `findIdempotentAnswer` for a caller's key.
    public func findIdempotentHold(userID: String, key: String, request: HoldRequest) throws -> HoldOutcome? {
        try findIdempotentAnswer(userID: userID, key: .caller(key), request: request)?.outcome
    }

    static func decision(from row: PostgresRow, quantity: Int? = nil) throws -> HoldDecision {
        // The control build's statement has no `replayed` column.
        let replayed = try row.decodeIfPresent("replayed", as: Bool.self) ?? false
        let outcome: HoldOutcome
        switch try row.decode("outcome", as: String.self) {
        case "created": outcome = .created(try hold(from: row))
        case "replayed": outcome = .replayed(try hold(from: row))
        case "key_reused": outcome = .keyReused
        case "unavailable": outcome = .unavailable(seatIDs: try row.decode("problem_seat_ids", as: [String].self))
        case "unknown_seats": outcome = .unknownSeats(try row.decode("problem_seat_ids", as: [String].self))
        case "showtime_not_found": outcome = .showtimeNotFound
        case "no_suitable_seats": outcome = .noSuitableSeats(quantity: quantity ?? 0)
        case "seat_limit":
            outcome = .seatLimitReached(
                limit: try row.decode("seat_limit", as: Int.self),
                held: try row.decode("seats_held", as: Int.self)
            )
        case let other: throw unexpected("inventory_hold", other)
        }
        return HoldDecision(outcome: outcome, replayed: replayed)
    }

    // MARK: Best-available holds

    /// A best-available hold (`quantity` seats chosen by the database, all or none), decided and (with a key)
    /// recorded in one transaction, with `decideHold`'s rules for keys, deadlines and the seat limit.
    public func decideBestAvailableHold(
        holdID: String,
        request: BestAvailableHoldRequest,
        key: HoldKey?,
        ttlSeconds: Int,
        seatLimit: SeatLimit? = nil,
        deadline: Int64? = nil
    ) throws -> HoldDecision {
        try decideAlone(
            HoldBatchRequest(kind: .best(request), holdID: holdID, key: key, deadline: deadline),
            ttlSeconds: ttlSeconds,
            seatLimit: seatLimit
        )
    }

    // MARK: Hold extension

    /// Moves the hold's `expiresAt` to min(now + `ttlSeconds`, created + `maxHoldSeconds`) and writes
    /// `hold.extended` (unless nothing moved). `userID` nil: an admin's (any hold).
    public func extend(
        _ request: HoldExtendRequest,
        ttlSeconds: Int,
        maxHoldSeconds: Int,
        deadline: Int64? = nil
    ) throws -> Result<Hold, ErrorBody> {
        try holdResult(
            .extend,
            [request.holdId, request.userId, ttlSeconds, maxHoldSeconds],
            holdID: request.holdId,
            deadline: deadline
        )
    }

    // MARK: Seat history

    /// A page of the seat's history, newest first; `.failure` SHOWTIME_NOT_FOUND or UNKNOWN_SEATS when the
    /// seat map has no such seat.
    public func seatHistory(_ request: SeatHistoryRequest) throws -> Result<SeatHistory, ErrorBody> {
        let limit = request.limit ?? SeatHistoryRequest.defaultLimit
        // One more than asked: whether another page follows.
        let rows = try run(.seatHistory, [request.showtimeId, request.seatId, request.before, limit + 1]).rows
        if rows.isEmpty {
            let known = try connection.query(
                "SELECT count(*) FILTER (WHERE seat_id = $2) AS seat, count(*) AS seats FROM seat_states WHERE showtime_id = $1",
                [request.showtimeId, request.seatId]
            ).rows[0]
            if try known.decode("seats", as: Int.self) == 0 {
                return .failure(Self.showtimeNotFound(request.showtimeId))
            }
            if try known.decode("seat", as: Int.self) == 0 { return .failure(.unknownSeats([request.seatId])) }
        }
        var entries: [SeatHistoryEntry] = []
        for row in rows.prefix(limit) {
            entries.append(
                SeatHistoryEntry(
                    version: try row.decode("version", as: Int64.self),
                    type: try Self.enumValue(row, "event_type", as: EventType.self),
                    occurredAt: Self.date(try row.decode("occurred_at_ms", as: Int64.self)),
                    state: try Self.enumValue(row, "state", as: SeatState.self),
                    holdId: try row.decode("hold_id", as: String.self),
                    userId: try row.decode("user_id", as: String.self),
                    orderId: try row.decodeIfPresent("order_id", as: String.self),
                    expiresAt: try row.decodeIfPresent("expires_at_ms", as: Int64.self).map(Self.date)
                )
            )
        }
        return .success(
            SeatHistory(
                showtimeId: request.showtimeId,
                seatId: request.seatId,
                entries: entries,
                nextBefore: rows.count > limit ? entries.last?.version : nil
            )
        )
    }

    /// Deletes up to `batchSize` history entries older than `retentionDays`, oldest first; returns how many.
    public func purgeSeatHistory(retentionDays: Int, batchSize: Int) throws -> Int {
        try single(.purgeSeatHistory, [retentionDays, batchSize]).decode("deleted", as: Int.self)
    }

    // MARK: Idempotency records

    /// Deletes up to `batchSize` idempotency records older than `retentionHours`, oldest first; returns how
    /// many. Call again while it returns a full batch (each call is one short transaction).
    public func purgeIdempotencyRecords(retentionHours: Int, batchSize: Int) throws -> Int {
        try single(.purgeIdempotency, [retentionHours, batchSize]).decode("deleted", as: Int.self)
    }

    public func release(_ request: ReleaseRequest, deadline: Int64? = nil) throws -> Result<Hold, ErrorBody> {
        try holdResult(.release, [request.holdId, request.userId], holdID: request.holdId, deadline: deadline)
    }

    public func purchase(_ request: PurchaseRequest, deadline: Int64? = nil) throws -> Result<Hold, ErrorBody> {
        try holdResult(
            .purchase,
            [request.holdId, request.orderId, request.userId],
            holdID: request.holdId,
            deadline: deadline
        )
    }

    /// The hold, when `userID` is its owner (`HOLD_NOT_OWNED` otherwise); nil `userID` reads any hold
    /// (an admin caller, or the core itself).
    public func hold(id: String, userID: String? = nil) throws -> Result<Hold, ErrorBody> {
        try holdResult(.getHold, [id, userID], holdID: id)
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
                    holdExpiresAt: try row.decodeIfPresent("hold_expires_at_ms", as: Int64.self).map(Self.date),
                    version: try row.decode("version", as: Int64.self),
                    section: try row.decodeIfPresent("section", as: String.self),
                    row: try row.decodeIfPresent("seat_row", as: String.self),
                    number: try row.decodeIfPresent("number", as: Int.self),
                    category: try row.decodeIfPresent("category", as: String.self),
                    rank: try row.decodeIfPresent("rank", as: Int.self)
                )
            )
        }
        return .success(Availability(showtimeId: showtimeID, availability: seats, summary: summary))
    }

    /// The showtime's seat rows changed since the snapshot `since` (all of them when `since` is nil, too old, or
    /// seats were added since), read in one snapshot with that snapshot and its clock: what `AvailabilityCache`
    /// keeps current with one round trip per read (migration 13, decision 0023).
    func availabilityRows(showtimeID: String, since: String?) throws -> AvailabilityRows {
        let rows = try run(.availabilitySince, [showtimeID, since]).rows
        guard let header = rows.first, header["seat_id"] == nil else {
            throw PostgresError(
                kind: .protocolError,
                message: "inventory_availability_since answered no header row",
                sqlState: nil,
                detail: nil,
                constraint: nil,
                isRetryable: false
            )
        }
        var seats: [SeatRow] = []
        seats.reserveCapacity(rows.count - 1)
        for row in rows.dropFirst() {
            seats.append(
                SeatRow(
                    seatID: try row.decode("seat_id", as: String.self),
                    state: try Self.enumValue(row, "state", as: SeatState.self),
                    holdExpiresAt: try row.decodeIfPresent("hold_expires_at_us", as: Int64.self),
                    version: try row.decode("version", as: Int64.self),
                    section: try row.decodeIfPresent("section", as: String.self),
                    row: try row.decodeIfPresent("seat_row", as: String.self),
                    number: try row.decodeIfPresent("number", as: Int.self),
                    category: try row.decodeIfPresent("category", as: String.self),
                    rank: try row.decodeIfPresent("rank", as: Int.self)
                )
            )
        }
        return AvailabilityRows(
            snapshot: try header.decode("snapshot", as: String.self),
            now: try header.decode("now_us", as: Int64.self),
            whole: try header.decode("whole", as: Bool.self),
            seats: seats
        )
    }

    /// Deletes the availability change rows no cached snapshot can need any more (one pruner at a time; the
    /// others get 0). Returns how many it deleted.
    @discardableResult
    public func pruneAvailabilityChanges() throws -> Int {
        try single(.pruneAvailabilityChanges, []).decode("deleted", as: Int.self)
    }

    /// Adds the seats the showtime does not have (in the order given) and sets the metadata of existing ones
    /// given as `seats` objects. A seat whose metadata would change while it is held or purchased refuses the
    /// whole request (SEAT_UNAVAILABLE, `details.seatIds`; nothing changes).
    public func defineSeats(_ request: SeatsDefineRequest) throws -> SeatsDefined {
        switch try defineSeatMap(request) {
        case .success(let defined): return defined
        case .failure(let error): throw DefineRefused(error: error)
        }
    }

    /// The seats could not be defined (`defineSeatMap`'s refusal, thrown by `defineSeats`).
    public struct DefineRefused: Error { public var error: ErrorBody }

    public func defineSeatMap(_ request: SeatsDefineRequest) throws -> Result<SeatsDefined, ErrorBody> {
        var seats: [JSONValue] = []
        seats.reserveCapacity(request.definitions.count)
        for (seat, hasMetadata) in request.definitions {
            var object: [String: JSONValue] = ["seatId": .string(seat.seatId), "meta": .bool(hasMetadata)]
            if let section = seat.section { object["section"] = .string(section) }
            if let row = seat.row { object["row"] = .string(row) }
            if let number = seat.number { object["number"] = .number(Double(number)) }
            if let category = seat.category { object["category"] = .string(category) }
            if let rank = seat.rank { object["rank"] = .number(Double(rank)) }
            seats.append(.object(object))
        }
        let json = String(decoding: try ContractJSON.encode(JSONValue.array(seats)), as: UTF8.self)
        let row = try single(.defineSeatMap, [request.showtimeId, json])
        if try row.decode("outcome", as: String.self) == "unavailable" {
            return .failure(.seatUnavailable(try row.decode("problem_seat_ids", as: [String].self)))
        }
        let defined = SeatsDefined(
            showtimeId: request.showtimeId,
            seatCount: try row.decode("seat_count", as: Int.self),
            added: try row.decode("added", as: Int.self),
            updated: try row.decode("updated", as: Int.self)
        )
        if defined.added > 0 {
            // A showtime provisioned minutes before its rush is unknown to the planner until autovacuum
            // analyzes: it estimates one row and scans every seat of the showtime on each hold and sweep
            // step (2-3x slower holds, 100x slower sweeps; BENCHMARKS.md). Seat maps change rarely, so
            // refreshing the statistics right away is cheap.
            try connection.query("ANALYZE seat_states")
        }
        return .success(defined)
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

    static let retriedStates: Set<String> = ["40P01", "40001"]  // deadlock, serialization failure

    /// SQLSTATEs of a transaction stopped by its deadline: `statement_timeout` or `inventory_deadline_check`
    /// (57014, query_canceled), `lock_timeout` (55P03, lock_not_available). Nothing of it committed.
    public static let deadlineStates: Set<String> = ["57014", "55P03"]

    /// The error says the transaction was stopped by the time limits `deadline` set (and rolled back).
    public static func isDeadlineError(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError, error.kind == .query, let state = error.sqlState else {
            return false
        }
        return deadlineStates.contains(state)
    }

    @discardableResult
    private func run(
        _ statement: Statement,
        _ parameters: [(any PostgresEncodable)?],
        deadline: Int64? = nil
    ) throws -> PostgresResult {
        var attempt = 1
        while true {
            let outcome = Result { () throws(PostgresError) -> PostgresResult in
                statement.writesEvents
                    ? try executeThenNotify(statement, parameters, deadline: deadline)
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
    ///
    /// With a `deadline` (Unix epoch milliseconds) the request's statements are bracketed by its time limits
    /// (`requestStatements`): `lock_timeout` and `statement_timeout` = the time left, and a last check of the
    /// database clock before COMMIT. Past the deadline the transaction rolls back and this throws a
    /// query error with a `deadlineStates` SQLSTATE.
    func executeThenNotify(
        _ statement: Statement,
        _ parameters: [(any PostgresEncodable)?],
        deadline: Int64?
    ) throws(PostgresError) -> PostgresResult {
        let request = Self.requestStatements(statement, parameters, deadline: deadline, now: epochMilliseconds())
        let outcomes = try connection.pipeline(
            [.query("BEGIN")] + request.statements + [.query("COMMIT"), .prepared(Statement.notifyRelay.rawValue)]
        )
        let operation = 1 + request.operationIndex
        let commit = 1 + request.statements.count
        // The operation's own error first (it decides whether a retry can help), then BEGIN's, the time
        // limits', the deadline check's or COMMIT's.
        for index in [operation] + Array(0..<commit).filter({ $0 != operation }) + [commit] {
            if case .failure(let error) = outcomes[index] { throw error }
        }
        // A failed NOTIFY (the operation committed) only delays the relay until its next poll.
        return try outcomes[operation].get()
    }

    /// One request's part of a transaction: its time limits, the operation, its deadline check. Kept apart from
    /// BEGIN/COMMIT so that a later batch of requests in one transaction can bracket each part with a
    /// SAVEPOINT of its own (`SET LOCAL` values set inside a savepoint that is rolled back are undone with it;
    /// each request sets its own before its statement).
    static func requestStatements(
        _ statement: Statement,
        _ parameters: [(any PostgresEncodable)?],
        deadline: Int64?,
        now: Int64
    ) -> (statements: [PostgresStatement], operationIndex: Int) {
        guard let deadline else { return ([.prepared(statement.rawValue, parameters)], 0) }
        // At least 1 ms: 0 would mean "no limit". A request already past its deadline is not sent here (the
        // worker drops it), and if it were, the check before COMMIT would still refuse it.
        let left = "\(max(1, deadline - now))ms"
        return (
            [
                .prepared(Statement.setTimeouts.rawValue, [left]),
                .prepared(statement.rawValue, parameters),
                .prepared(Statement.deadlineCheck.rawValue, [deadline]),
            ],
            1
        )
    }

    private func single(
        _ statement: Statement,
        _ parameters: [(any PostgresEncodable)?],
        deadline: Int64? = nil
    ) throws -> PostgresRow {
        guard let row = try run(statement, parameters, deadline: deadline).rows.first else {
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
        holdID: String,
        deadline: Int64? = nil
    ) throws -> Result<Hold, ErrorBody> {
        let row = try single(statement, parameters, deadline: deadline)
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
        case "extension_limit":
            return .failure(
                ErrorBody(
                    code: .extensionLimit,
                    message: "The hold is already at its longest life (MAX_HOLD_SECONDS)",
                    details: ["holdId": .string(holdID)]
                )
            )
        case let other: throw Self.unexpected(statement.rawValue, other)
        }
    }

    static func showtimeNotFound(_ showtimeID: String) -> ErrorBody {
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

    static func unexpected(_ function: String, _ outcome: String) -> PostgresError {
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
