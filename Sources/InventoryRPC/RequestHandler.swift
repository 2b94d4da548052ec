import AMQPClient
import Contracts
import Foundation
import Logging
import PostgresClient

/// What the broker told us about a delivery, beyond its body and headers.
struct DeliveryContext: Sendable {
    /// `x-deadline` (Unix epoch milliseconds), when the request has one: the database gets the time left.
    var deadline: Int64?
    /// The AMQP `message_id` property.
    var messageID: String?
    /// The broker user that published the request (the AMQP `user_id` property, which RabbitMQ checks against
    /// the connection's login); derived idempotency keys are scoped by it.
    var brokerUser: String?

    init(deadline: Int64? = nil, messageID: String? = nil, brokerUser: String? = nil) {
        self.deadline = deadline
        self.messageID = messageID
        self.brokerUser = brokerUser
    }
}

/// The transaction of a request with a deadline was stopped by it and rolled back (lock_timeout,
/// statement_timeout or the check before COMMIT): nothing happened, and the caller, told it timed out, gets
/// no answer (INTERFACE.md rule 9).
struct DeadlinePassedInDatabase: Error, CustomStringConvertible {
    var deadline: Int64
    var description: String { "the request's deadline (\(deadline)) passed before its transaction could commit" }
}

/// An RPC reply, ready to publish.
struct RPCResponse {
    var body: [UInt8]
    /// `ok` or the error code, for metrics.
    var outcome: String
    /// The hold came from an earlier request with the same idempotency key.
    var replayed = false
}

/// Who sent a request: its AMQP `user_id` (checked by RabbitMQ against the connection's login) and what
/// the core's table grants that broker user.
struct Caller {
    var brokerUser: String?
    var grant: BrokerPermissions.Grant

    /// The refusal of the body's `userId`, if any (``BrokerAuthorization/userRefusal``).
    func refusal(_ operation: RPCOperation, userId: String?) -> ErrorBody? {
        BrokerAuthorization.userRefusal(operation, userId: userId, brokerUser: brokerUser, grant: grant)
    }
}

/// Runs the operations for one worker thread, on that thread's database and Redis connections.
///
/// The database decides every outcome; Redis only answers a loser early when the seat's holder is known to
/// be live (so a lock left behind by a crashed or failed request can never turn a buyer away).
final class RequestHandler {
    let database: DatabaseSession
    let locks: SeatLocks
    let configuration: CoreConfiguration
    let metrics: ServiceMetrics
    let limits: RequestLimits
    /// Holds seen live in the database, for a moment (see `cacheUntil`): lets Redis conflicts be answered without
    /// asking the database again. Only ever answers "unavailable" for seats of a hold that committed.
    var liveHolders: [String: Date] = [:]
    /// Shared with the process's other worker threads on the same database.
    private let availabilityCache: AvailabilityCache

    init(database: DatabaseSession, locks: SeatLocks, configuration: CoreConfiguration, metrics: ServiceMetrics) {
        self.database = database
        self.locks = locks
        self.configuration = configuration
        self.metrics = metrics
        self.limits = RequestLimits(maxSeatsPerHold: configuration.maxSeatsPerHold)
        self.availabilityCache = AvailabilityCache.shared(databaseURL: configuration.databaseURL)
    }

    func close() {
        database.close()
        locks.close()
    }

    /// Answers one request of `caller`, whom the worker has already allowed to call `operation`. Throws
    /// `DeadlinePassedInDatabase` when the request's transaction ran into its deadline (nothing committed;
    /// answer nothing), otherwise only for the unexpected (the worker answers `INTERNAL` and logs).
    func handle(
        _ operation: RPCOperation,
        body: [UInt8],
        headers: [String: AMQPFieldValue],
        caller: Caller,
        delivery: DeliveryContext = DeliveryContext(),
        logger: Logger
    ) throws
        -> RPCResponse
    {
        let deadline = delivery.deadline
        switch operation {
        case .ping:
            return Self.ok(PingReply(status: "ok"))
        case .hold:
            switch holds([HoldCall(body: body, headers: headers, caller: caller, delivery: delivery)], wait: true)[0] {
            case .response(let response): return response
            case .noAnswer(let deadline): throw DeadlinePassedInDatabase(deadline: deadline)
            case .failed(let error): throw error
            case .deferred: return Self.unavailable  // A batch that waits defers nothing.
            }
        case .release:
            // Release and purchase keep no idempotency records: they are idempotent by nature (a repeat answers
            // the hold as it now stands; decision 0013). Their deadline reaches the database like a hold's.
            return try withStore(deadline: deadline) { store in
                switch decode(ReleaseRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request):
                    if let refusal = caller.refusal(operation, userId: request.userId) { return Self.failure(refusal) }
                    return finished(try store.release(request, deadline: deadline))
                }
            }
        case .purchase:
            return try withStore(deadline: deadline) { store in
                switch decode(PurchaseRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request):
                    if let refusal = caller.refusal(operation, userId: request.userId) { return Self.failure(refusal) }
                    return finished(try store.purchase(request, deadline: deadline))
                }
            }
        case .holdGet:
            return try withStore { store in
                switch decode(HoldGetRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request):
                    if let refusal = caller.refusal(operation, userId: request.userId) { return Self.failure(refusal) }
                    return Self.reply(try store.hold(id: request.holdId, userID: request.userId))
                }
            }
        case .availability:
            return try withStore { store in
                switch decode(AvailabilityRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request):
                    // The hot read of a rush: one cheap question to the database per read, the seats and the
                    // encoded reply reused for whatever did not change (AvailabilityCache, decision 0023).
                    let reply = try availabilityCache.reply(showtimeID: request.showtimeId) { since in
                        try store.availabilityRows(showtimeID: request.showtimeId, since: since)
                    }
                    guard let reply else { return Self.failure(InventoryStore.showtimeNotFound(request.showtimeId)) }
                    return RPCResponse(body: reply, outcome: "ok")
                }
            }
        case .seatsDefine:
            return try withStore { store in
                switch decode(SeatsDefineRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request): return Self.reply(try store.defineSeatMap(request))
                }
            }
        case .holdExtend:
            return try withStore(deadline: deadline) { store in
                switch decode(HoldExtendRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request):
                    if let refusal = caller.refusal(operation, userId: request.userId) { return Self.failure(refusal) }
                    return Self.reply(
                        try store.extend(
                            request,
                            ttlSeconds: configuration.holdTTLSeconds,
                            maxHoldSeconds: configuration.maxHoldSeconds,
                            deadline: deadline
                        )
                    )
                }
            }
        case .seatHistory:
            return try withStore { store in
                switch decode(SeatHistoryRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request): return Self.reply(try store.seatHistory(request))
                }
            }
        }
    }

    /// The key of the `idempotency-key` header merged with the body's: a header that is not an identifier
    /// string, or one that differs from the body's key, is VALIDATION_FAILED.
    static func headerKey(_ headers: [String: AMQPFieldValue], bodyKey: String?) -> Result<String?, ErrorBody> {
        guard let header = headers[ContractHeaders.amqpIdempotencyKey] else { return .success(bodyKey) }
        guard case .string(let headerKey) = header else {
            return .failure(
                .validation([
                    ValidationProblem(
                        field: ContractHeaders.amqpIdempotencyKey,
                        rule: .type,
                        message: "The idempotency-key header must be a string"
                    )
                ])
            )
        }
        if let problem = Identifier.problem(headerKey, field: ContractHeaders.amqpIdempotencyKey) {
            return .failure(.validation([problem]))
        }
        if let bodyKey, bodyKey != headerKey {
            return .failure(
                .validation([
                    ValidationProblem(
                        field: "idempotencyKey",
                        rule: .mismatch,
                        message: "The body's idempotencyKey and the idempotency-key header differ"
                    )
                ])
            )
        }
        return .success(headerKey)
    }

    static func derivedKey(brokerUser: String?, messageID: String) -> String {
        "@\(brokerUser ?? "")/\(messageID)"
    }

    /// The seats among `holders` whose holder is a live (or purchased) hold in the database, in request order.
    func confirmedUnavailable(
        _ holders: [SeatLocks.SeatHolder],
        requested: [String],
        store: InventoryStore
    ) throws
        -> [String]
    {
        let now = Date()
        if liveHolders.count > 50_000 { liveHolders = liveHolders.filter { $0.value > now } }
        var live: Set<String> = []
        for holdID in Set(holders.map(\.holdID)) {
            if let expiresAt = liveHolders[holdID], expiresAt > now {
                live.insert(holdID)
                continue
            }
            guard case .success(let hold) = try store.hold(id: holdID) else { continue }
            switch hold.status {
            case .active where hold.expiresAt > now:
                liveHolders[holdID] = Self.cacheUntil(hold.expiresAt)
                live.insert(holdID)
            case .purchased:
                live.insert(holdID)
            default:
                break
            }
        }
        let taken = Set(holders.filter { live.contains($0.holdID) }.map(\.seatID))
        return requested.filter { taken.contains($0) }
    }

    /// How long a hold seen live is trusted without asking again: briefly, so that a hold released on
    /// another worker (whose lock could not be deleted because Redis was away) turns nobody away for long.
    static func cacheUntil(_ expiresAt: Date) -> Date {
        min(expiresAt, Date().addingTimeInterval(2))
    }

    // MARK: Helpers

    /// A release or purchase committed: the hold's seat locks go (best effort) unless it is still active.
    private func finished(_ result: Result<Hold, ErrorBody>) -> RPCResponse {
        if case .success(let hold) = result, hold.status != .active {
            liveHolders[hold.holdId] = nil
            locks.release(showtimeID: hold.showtimeId, seatIDs: hold.seatIds, holdID: hold.holdId)
        }
        return Self.reply(result)
    }

    /// Runs `body` with the database, answering `SERVICE_UNAVAILABLE` when it is down or the connection broke.
    /// A deadlock or serialization failure (rolled back, nothing happened) is retried twice, then answered
    /// `SERVICE_UNAVAILABLE` like any other "try again". A transaction stopped by the request's `deadline`
    /// throws `DeadlinePassedInDatabase` (no answer); without a deadline no time limit is set, and a
    /// cancellation from elsewhere (an operator) is unexpected like any other error.
    private func withStore(
        deadline: Int64? = nil,
        _ body: (InventoryStore) throws -> RPCResponse
    ) throws -> RPCResponse {
        var attempt = 0
        while true {
            guard let store = database.currentStore() else { return Self.unavailable }
            do {
                return try body(store)
            } catch {
                if let deadline, InventoryStore.isDeadlineError(error) {
                    throw DeadlinePassedInDatabase(deadline: deadline)
                }
                if database.handle(error) { return Self.unavailable }
                guard DatabaseSession.isTransient(error) else { throw error }
                attempt += 1
                if attempt == 3 { return Self.unavailable }
            }
        }
    }

    private func decode<T: ValidatableRequest>(_ type: T.Type, _ body: [UInt8]) -> Result<T, ErrorBody> {
        RequestDecoder.decode(type, from: body, limits: limits)
    }

    static let unavailable = failure(
        ErrorBody(
            code: .serviceUnavailable,
            message: "The inventory database is unreachable; try again shortly"
        )
    )

    /// `hold_` and 32 hex digits from the system's CSPRNG: opaque and unguessable.
    static func makeHoldID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return "hold_" + hex(high) + hex(low)
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    static func reply(_ decision: HoldDecision) -> RPCResponse {
        var response = reply(decision.outcome)
        if decision.replayed { response.replayed = true }
        return response
    }

    static func reply(_ outcome: HoldOutcome) -> RPCResponse {
        switch outcome {
        case .created(let hold):
            return ok(hold)
        case .replayed(let hold):
            var response = ok(hold)
            response.replayed = true
            return response
        case .unavailable(let seatIDs):
            return failure(.seatUnavailable(seatIDs))
        case .unknownSeats(let seatIDs):
            return failure(.unknownSeats(seatIDs))
        case .showtimeNotFound:
            return failure(ErrorBody(code: .showtimeNotFound, message: "The showtime has no seat map"))
        case .seatLimitReached(let limit, let held):
            return failure(.seatLimitReached(limit: limit, held: held))
        case .keyReused:
            return failure(
                ErrorBody(
                    code: .idempotencyKeyReused,
                    message: "This idempotency key was used with a different request"
                )
            )
        case .noSuitableSeats(let quantity):
            return failure(.noSuitableSeats(quantity: quantity))
        }
    }

    static func reply<T: Codable & Sendable>(_ result: Result<T, ErrorBody>) -> RPCResponse {
        switch result {
        case .success(let value): ok(value)
        case .failure(let error): failure(error)
        }
    }

    static func ok<T: Codable & Sendable>(_ value: T) -> RPCResponse {
        RPCResponse(body: encode(RPCReply<T>.ok(value)), outcome: "ok")
    }

    static func failure(_ error: ErrorBody) -> RPCResponse {
        RPCResponse(body: encode(RPCReply<PingReply>.error(error)), outcome: error.code.rawValue)
    }

    static func internalError(_ message: String = "An unexpected error occurred") -> RPCResponse {
        failure(ErrorBody(code: .internalError, message: message))
    }

    private static func encode<T: Codable & Sendable>(_ reply: RPCReply<T>) -> [UInt8] {
        if let data = try? ContractJSON.encoder().encode(reply) { return Array(data) }
        return Array(#"{"ok":false,"error":{"code":"INTERNAL","message":"The reply could not be encoded"}}"#.utf8)
    }
}
