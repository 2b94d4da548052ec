import AMQPClient
import Contracts
import Foundation
import Logging
import PostgresClient

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

/// Runs the seven operations for one worker thread, on that thread's database and Redis connections.
///
/// The database decides every outcome; Redis only answers a loser early when the seat's holder is known to
/// be live (so a lock left behind by a crashed or failed request can never turn a buyer away).
final class RequestHandler {
    let database: DatabaseSession
    let locks: SeatLocks
    private let configuration: CoreConfiguration
    private let metrics: ServiceMetrics
    private let limits: RequestLimits
    /// Holds seen live in the database, for a moment (see `cacheUntil`): lets Redis conflicts be answered without
    /// asking the database again. Only ever answers "unavailable" for seats of a hold that committed.
    private var liveHolders: [String: Date] = [:]

    init(database: DatabaseSession, locks: SeatLocks, configuration: CoreConfiguration, metrics: ServiceMetrics) {
        self.database = database
        self.locks = locks
        self.configuration = configuration
        self.metrics = metrics
        self.limits = RequestLimits(maxSeatsPerHold: configuration.maxSeatsPerHold)
    }

    func close() {
        database.close()
        locks.close()
    }

    /// Answers one request of `caller`, whom the worker has already allowed to call `operation`. Throws only
    /// for the unexpected (the worker answers `INTERNAL` and logs).
    func handle(
        _ operation: RPCOperation,
        body: [UInt8],
        headers: [String: AMQPFieldValue],
        caller: Caller,
        logger: Logger
    ) throws
        -> RPCResponse
    {
        switch operation {
        case .ping:
            return Self.ok(PingReply(status: "ok"))
        case .hold:
            let response = try hold(body: body, headers: headers, caller: caller, logger: logger)
            metrics.hold(
                outcome: response.replayed ? "replayed" : (response.outcome == "ok" ? "created" : response.outcome)
            )
            return response
        case .release:
            return try withStore { store in
                switch decode(ReleaseRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request):
                    if let refusal = caller.refusal(operation, userId: request.userId) { return Self.failure(refusal) }
                    return finished(try store.release(request))
                }
            }
        case .purchase:
            return try withStore { store in
                switch decode(PurchaseRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request):
                    if let refusal = caller.refusal(operation, userId: request.userId) { return Self.failure(refusal) }
                    return finished(try store.purchase(request))
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
                    switch try store.availability(showtimeID: request.showtimeId) {
                    // The hot read of a rush: written without Codable (Contracts' AvailabilityJSON).
                    case .success(let availability):
                        return RPCResponse(body: AvailabilityJSON.okReply(availability), outcome: "ok")
                    case .failure(let error): return Self.failure(error)
                    }
                }
            }
        case .seatsDefine:
            return try withStore { store in
                switch decode(SeatsDefineRequest.self, body) {
                case .failure(let error): return Self.failure(error)
                case .success(let request): return Self.ok(try store.defineSeats(request))
                }
            }
        }
    }

    // MARK: Hold

    private func hold(
        body: [UInt8],
        headers: [String: AMQPFieldValue],
        caller: Caller,
        logger: Logger
    ) throws -> RPCResponse {
        var request: HoldRequest
        switch decode(HoldRequest.self, body) {
        case .failure(let error): return Self.failure(error)
        case .success(let decoded): request = decoded
        }
        if let refusal = caller.refusal(.hold, userId: request.userId) { return Self.failure(refusal) }
        if let header = headers[ContractHeaders.amqpIdempotencyKey] {
            guard case .string(let headerKey) = header else {
                return Self.failure(
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
                return Self.failure(.validation([problem]))
            }
            if let bodyKey = request.idempotencyKey, bodyKey != headerKey {
                return Self.failure(
                    .validation([
                        ValidationProblem(
                            field: "idempotencyKey",
                            rule: .mismatch,
                            message: "The body's idempotencyKey and the idempotency-key header differ"
                        )
                    ])
                )
            }
            request.idempotencyKey = headerKey
        }

        return try withStore { store in
            let holdID = Self.makeHoldID()
            var markerSet = false
            var locked = false
            // The marker only covers the time the database has not decided yet; however this request ends,
            // from then on the database answers for the key (a replay or IDEMPOTENCY_KEY_REUSED).
            defer {
                if markerSet, let key = request.idempotencyKey {
                    locks.clearMarker(userID: request.userId, key: key, holdID: holdID)
                }
            }
            do {
                if let key = request.idempotencyKey {
                    if let earlier = try store.findIdempotentHold(userID: request.userId, key: key, request: request) {
                        return Self.reply(earlier)
                    }
                    // Marker taken: another request with this key is in flight (or committed since the
                    // look-up above). It usually decides within milliseconds, so look again a few times over
                    // ~300 ms: its hold committed → replay; its marker gone (it failed) → go on ourselves.
                    // Only then IDEMPOTENCY_KEY_IN_USE.
                    var marker = locks.setMarker(userID: request.userId, key: key, holdID: holdID)
                    var pauses: ArraySlice<Double> = [0.02, 0.04, 0.08, 0.16]
                    while marker == .taken {
                        if let earlier = try store.findIdempotentHold(
                            userID: request.userId,
                            key: key,
                            request: request
                        ) {
                            return Self.reply(earlier)
                        }
                        guard let pause = pauses.popFirst() else {
                            return Self.failure(
                                ErrorBody(
                                    code: .idempotencyKeyInUse,
                                    message: "A request with this idempotency key is still being processed",
                                    details: ["idempotencyKey": .string(key)]
                                )
                            )
                        }
                        Thread.sleep(forTimeInterval: pause)
                        marker = locks.setMarker(userID: request.userId, key: key, holdID: holdID)
                    }
                    markerSet = marker == .set
                }

                let ttl = Int64(configuration.holdTTLSeconds) * 1000
                switch locks.acquire(
                    showtimeID: request.showtimeId,
                    seatIDs: request.seatIds,
                    holdID: holdID,
                    ttlMilliseconds: ttl
                ) {
                case .acquired:
                    locked = true
                case .skipped:
                    break
                case .taken(let holders):
                    let unavailable = try confirmedUnavailable(holders, requested: request.seatIds, store: store)
                    if !unavailable.isEmpty {
                        // A duplicate whose first request committed meanwhile replays rather than losing to it.
                        if let key = request.idempotencyKey,
                            let earlier = try store.findIdempotentHold(
                                userID: request.userId,
                                key: key,
                                request: request
                            )
                        {
                            return Self.reply(earlier)
                        }
                        return Self.failure(.seatUnavailable(unavailable))
                    }
                // Every lock belongs to a hold that is not (or not yet) live: the database decides.
                }

                let outcome = try store.hold(holdID: holdID, request: request, ttlSeconds: configuration.holdTTLSeconds)
                if case .created(let hold) = outcome {
                    liveHolders[hold.holdId] = Self.cacheUntil(hold.expiresAt)
                } else if locked {
                    locks.release(showtimeID: request.showtimeId, seatIDs: request.seatIds, holdID: holdID)
                }
                return Self.reply(outcome)
            } catch {
                if locked { locks.release(showtimeID: request.showtimeId, seatIDs: request.seatIds, holdID: holdID) }
                throw error
            }
        }
    }

    /// The seats among `holders` whose holder is a live (or purchased) hold in the database, in request order.
    private func confirmedUnavailable(
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
    private static func cacheUntil(_ expiresAt: Date) -> Date {
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
    /// `SERVICE_UNAVAILABLE` like any other "try again".
    private func withStore(_ body: (InventoryStore) throws -> RPCResponse) throws -> RPCResponse {
        var attempt = 0
        while true {
            guard let store = database.currentStore() else { return Self.unavailable }
            do {
                return try body(store)
            } catch {
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
        case .keyReused:
            return failure(
                ErrorBody(
                    code: .idempotencyKeyReused,
                    message: "This idempotency key was used with a different request"
                )
            )
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
