import Contracts
import Foundation
import PostgresClient

/// One hold request of a group commit (`InventoryStore.decideHolds`).
public struct HoldBatchRequest: Sendable {
    public enum Kind: Sendable {
        /// A hold of named seats.
        case seats(HoldRequest)
        /// A best-available hold: the database chooses `quantity` seats.
        case best(BestAvailableHoldRequest)
    }

    public var kind: Kind
    public var holdID: String
    /// The key the hold is decided under (the caller's or one derived from the delivery), if any.
    public var key: HoldKey?
    /// The caller's deadline (Unix epoch milliseconds), if any: past it, the request commits nothing.
    public var deadline: Int64?

    public init(kind: Kind, holdID: String, key: HoldKey?, deadline: Int64?) {
        self.kind = kind
        self.holdID = holdID
        self.key = key
        self.deadline = deadline
    }
}

/// What the database made of one request of a group commit.
public enum HoldBatchResult: Sendable {
    /// Decided and committed (a refusal included): the answer to give.
    case decided(HoldDecision)
    /// Not attempted: another transaction held its seat limit's lock or one of its seats when the batch
    /// began. Decide it alone (`wait: true`), so that it waits for no one while holding the batch up.
    case deferred
    /// Its deadline passed before it could commit: nothing of it committed, and the caller gets no answer.
    case deadlinePassed
    /// A deadlock or serialization failure rolled it back three times: "try again".
    case retry
    /// The database refused it with an error nobody expects (logged, answered INTERNAL).
    case failed(PostgresError)
}

extension InventoryStore {
    /// The claim `inventory_hold_batch` runs per request of named seats: nil for the production function;
    /// the control build's unsafe claim otherwise (`ControlUnsafeClaim.swift` replaces `claimSQL`).
    static var batchClaimSQL: String? {
        claimSQL == productionClaimSQL ? nil : claimSQL
    }

    /// Decides `requests` together: one transaction, one round trip, one commit (migration 12, decision 0022),
    /// each request with the outcome it would have had alone. With `wait` false (a batch of several) a request
    /// whose locks another transaction holds is `.deferred` instead of holding the batch up; with `wait` true
    /// every lock is waited for (bounded by the deadlines). A request that deadlocks or fails to serialize is
    /// decided again (up to 3 attempts in all); so is every request still in time when the batch as a whole
    /// ran into the earliest deadline among them. Throws only when the database could not answer (the
    /// connection); then nothing is known to have committed... as for one request alone.
    public func decideHolds(
        _ requests: [HoldBatchRequest],
        ttlSeconds: Int,
        seatLimit: SeatLimit?,
        wait: Bool
    ) throws -> [HoldBatchResult] {
        var results = [HoldBatchResult?](repeating: nil, count: requests.count)
        var pending = Array(requests.indices)
        var attempt = 1
        while !pending.isEmpty {
            let round = try decideOnce(pending.map { requests[$0] }, ttlSeconds: ttlSeconds, seatLimit: seatLimit, wait: wait)
            var again: [Int] = []
            switch round {
            case .batchRolledBack(let deadlineOnly):
                let now = epochMilliseconds()
                for index in pending {
                    if deadlineOnly, let deadline = requests[index].deadline, deadline <= now {
                        results[index] = .deadlinePassed
                    } else {
                        again.append(index)
                    }
                }
                // A batch whose earliest deadline passed gives that request up; the others are still in time.
                if deadlineOnly && again.count == pending.count {
                    // Every deadline was still ahead by our clock: the database's clock said otherwise.
                    for index in again { results[index] = requests[index].deadline == nil ? .retry : .deadlinePassed }
                    again = []
                }
            case .decided(let outcomes):
                for (position, index) in pending.enumerated() {
                    if case .retry = outcomes[position] {
                        again.append(index)
                    } else {
                        results[index] = outcomes[position]
                    }
                }
            }
            retriedRequests += again.count
            pending = again
            attempt += 1
            if attempt > 3 {
                for index in pending { results[index] = .retry }
                break
            }
        }
        return results.map { $0 ?? .retry }
    }

    /// One request alone (a batch of one that waits for its locks): the decision, or the error the single
    /// statement paths throw (a deadline error `isDeadlineError` recognises; a serialization failure).
    func decideAlone(_ request: HoldBatchRequest, ttlSeconds: Int, seatLimit: SeatLimit?) throws -> HoldDecision {
        switch try decideHolds([request], ttlSeconds: ttlSeconds, seatLimit: seatLimit, wait: true)[0] {
        case .decided(let decision): return decision
        case .deadlinePassed: throw Self.stateError("57014", "the request's deadline passed before its commit")
        case .retry, .deferred: throw Self.stateError("40001", "the hold could not be serialized; try again")
        case .failed(let error): throw error
        }
    }

    private enum Round {
        case decided([HoldBatchResult])
        /// The batch statement (or its transaction) failed as a whole, so nothing committed. `deadlineOnly`:
        /// by a deadline (statement or lock timeout, or the check before COMMIT), else a deadlock or
        /// serialization failure.
        case batchRolledBack(deadlineOnly: Bool)
    }

    private func decideOnce(
        _ requests: [HoldBatchRequest],
        ttlSeconds: Int,
        seatLimit: SeatLimit?,
        wait: Bool
    ) throws -> Round {
        let items = requests.map { BatchItem($0, ttlSeconds: ttlSeconds, seatLimit: seatLimit) }
        let json = String(decoding: try JSONEncoder().encode(items), as: UTF8.self)
        var statements: [PostgresStatement] = [.query("BEGIN")]
        // Every request has a deadline: the transaction's time limits are the latest of them, so nothing
        // waits past the time any answer could still be useful (each request's own limit is set per request).
        let deadlines = requests.compactMap(\.deadline)
        if deadlines.count == requests.count, let latest = deadlines.max() {
            statements.append(.prepared(Statement.setTimeouts.rawValue, ["\(max(1, latest - epochMilliseconds()))ms"]))
        }
        let batch = statements.count
        statements.append(.prepared(Statement.holdBatch.rawValue, [json, wait, Self.batchClaimSQL]))
        let commit = statements.count
        statements += [.query("COMMIT"), .prepared(Statement.notifyRelay.rawValue)]
        let outcomes = try connection.pipeline(statements)

        // The batch's own error first (it says whether the requests may be decided again), then the others'.
        for index in [batch] + Array(0...commit).filter({ $0 != batch }) {
            guard case .failure(let error) = outcomes[index] else { continue }
            if let state = error.sqlState, Self.deadlineStates.contains(state) {
                return .batchRolledBack(deadlineOnly: true)
            }
            if let state = error.sqlState, Self.retriedStates.contains(state) {
                return .batchRolledBack(deadlineOnly: false)
            }
            throw error
        }
        let rows = try outcomes[batch].get().rows
        guard rows.count == requests.count else {
            throw Self.stateError(nil, "inventory_hold_batch answered \(rows.count) rows for \(requests.count) requests")
        }
        var results = [HoldBatchResult](repeating: .retry, count: requests.count)
        for row in rows {
            let position = try row.decode("ord", as: Int.self)
            guard results.indices.contains(position) else {
                throw Self.stateError(nil, "inventory_hold_batch answered request \(position) of \(requests.count)")
            }
            results[position] = try Self.result(from: row, request: requests[position])
        }
        return .decided(results)
    }

    private static func result(from row: PostgresRow, request: HoldBatchRequest) throws -> HoldBatchResult {
        if try row.decode("deferred", as: Bool.self) { return .deferred }
        if let state = try row.decodeIfPresent("error_state", as: String.self) {
            if state == "IVDL1" || (request.deadline != nil && deadlineStates.contains(state)) {
                return .deadlinePassed
            }
            if retriedStates.contains(state) { return .retry }
            let message = try row.decodeIfPresent("error_message", as: String.self) ?? "no message"
            return .failed(stateError(state, message))
        }
        let quantity: Int? =
            switch request.kind {
            case .seats: nil
            case .best(let best): best.quantity
            }
        return .decided(try decision(from: row, quantity: quantity))
    }

    static func stateError(_ state: String?, _ message: String) -> PostgresError {
        PostgresError(
            kind: state == nil ? .protocolError : .query,
            message: message,
            sqlState: state,
            detail: nil,
            constraint: nil,
            isRetryable: false
        )
    }
}

/// One element of `inventory_hold_batch`'s `p_items` (migration 12).
private struct BatchItem: Encodable {
    var kind: String
    var holdID: String
    var showtimeID: String
    var userID: String
    var seatIDs: [String]?
    var quantity: Int?
    var section: String?
    var category: String?
    var together: Bool?
    var key: String?
    var requestHash: String?
    var derived: Bool
    var ttl: Int
    var maxSeats: Int?
    var countPurchased: Bool?
    var deadline: Int64?

    enum CodingKeys: String, CodingKey {
        case kind, quantity, section, category, together, key, derived, ttl, deadline
        case holdID = "hold_id"
        case showtimeID = "showtime_id"
        case userID = "user_id"
        case seatIDs = "seat_ids"
        case requestHash = "request_hash"
        case maxSeats = "max_seats"
        case countPurchased = "count_purchased"
    }

    init(_ request: HoldBatchRequest, ttlSeconds: Int, seatLimit: SeatLimit?) {
        holdID = request.holdID
        key = request.key?.text
        derived = request.key?.isDerived ?? false
        ttl = ttlSeconds
        maxSeats = seatLimit?.maxSeatsPerUser
        countPurchased = seatLimit?.countsPurchased
        deadline = request.deadline
        switch request.kind {
        case .seats(let hold):
            kind = "seats"
            showtimeID = hold.showtimeId
            userID = hold.userId
            seatIDs = hold.seatIds
            requestHash = request.key.map { _ in RequestHash.of(hold) }
        case .best(let best):
            kind = "best"
            showtimeID = best.showtimeId
            userID = best.userId
            quantity = best.quantity
            section = best.section
            category = best.category
            together = best.together
            requestHash = request.key.map { _ in RequestHash.of(best) }
        }
    }
}
