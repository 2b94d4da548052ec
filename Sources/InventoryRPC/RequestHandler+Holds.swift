import AMQPClient
import Contracts
import Foundation
import PostgresClient

/// One hold request as the worker took it from the broker, allowed to call `hold`.
struct HoldCall {
    var body: [UInt8]
    var headers: [String: AMQPFieldValue]
    var caller: Caller
    var delivery: DeliveryContext
}

/// A hold request that got as far as the database: validated, authorized, not answered by an earlier
/// request's record, its Redis locks taken (named seats) or not needed (best available).
struct PendingHold {
    var request: HoldBatchRequest
    /// The seats' Redis locks are this request's (to delete unless it creates the hold).
    var locked: Bool
}

/// The answer to one hold request of a batch.
enum HoldAnswer {
    /// Publish this reply.
    case response(RPCResponse)
    /// The request's deadline passed before it could commit: nothing committed; answer nothing.
    case noAnswer(deadline: Int64)
    /// Unexpected: the worker answers INTERNAL and logs.
    case failed(any Error)
    /// Its locks were busy when its batch began: decide it alone (`decide([pending], wait: true)`), after
    /// the rest of its batch has been answered.
    case deferred(PendingHold)
}

extension RequestHandler {
    // MARK: Holds, decided in groups (decision 0022)

    /// Answers hold requests together: each is validated, authorized and checked against Redis and earlier
    /// records on its own, then every one that needs the database is decided in one transaction
    /// (`InventoryStore.decideHolds`). Answers are in the order of `calls`. With `wait` false a request whose
    /// locks are busy comes back `.deferred`.
    func holds(_ calls: [HoldCall], wait: Bool) -> [HoldAnswer] {
        var answers = [HoldAnswer?](repeating: nil, count: calls.count)
        var pending: [(index: Int, hold: PendingHold)] = []
        for (index, call) in calls.enumerated() {
            switch prepareHold(call) {
            case .answer(let answer): answers[index] = answer
            case .pending(let hold): pending.append((index, hold))
            }
        }
        if !pending.isEmpty {
            for (position, answer) in decide(pending.map(\.hold), wait: wait).enumerated() {
                answers[pending[position].index] = answer
            }
        }
        let result = answers.map { $0 ?? .response(Self.internalError()) }
        for case .response(let response) in result { countHold(response) }
        return result
    }

    /// Decides requests that reached the database, in one transaction, and turns each outcome into its
    /// answer: a created hold is remembered as live; a request that did not create its hold gives back its
    /// Redis locks.
    func decide(_ pending: [PendingHold], wait: Bool) -> [HoldAnswer] {
        let results: [HoldBatchResult]
        do {
            guard let store = database.currentStore() else {
                return pending.map { unlocked($0, .response(Self.unavailable)) }
            }
            results = try store.decideHolds(
                pending.map(\.request),
                ttlSeconds: configuration.holdTTLSeconds,
                seatLimit: configuration.seatLimit,
                wait: wait
            )
        } catch {
            let answer: HoldAnswer = database.handle(error) ? .response(Self.unavailable) : .failed(error)
            return pending.map { unlocked($0, answer) }
        }
        var answers: [HoldAnswer] = []
        for (hold, result) in zip(pending, results) {
            switch result {
            case .decided(let decision):
                if case .created(let created) = decision.outcome {
                    liveHolders[created.holdId] = Self.cacheUntil(created.expiresAt)
                    answers.append(.response(Self.reply(decision)))
                } else {
                    answers.append(unlocked(hold, .response(Self.reply(decision))))
                }
            case .deferred:
                answers.append(.deferred(hold))
            case .deadlinePassed:
                answers.append(unlocked(hold, .noAnswer(deadline: hold.request.deadline ?? 0)))
            case .retry:
                answers.append(unlocked(hold, .response(Self.unavailable)))
            case .failed(let error):
                answers.append(unlocked(hold, .failed(error)))
            }
        }
        return answers
    }

    /// A request its batch deferred, decided alone: it waits for its locks now (bounded by its deadline).
    func decideAlone(_ pending: PendingHold) -> HoldAnswer {
        let answer = decide([pending], wait: true)[0]
        if case .response(let response) = answer { countHold(response) }
        return answer
    }

    /// Counts a hold's answer (created, replayed or the error code).
    private func countHold(_ response: RPCResponse) {
        metrics.hold(outcome: response.replayed ? "replayed" : (response.outcome == "ok" ? "created" : response.outcome))
    }

    /// `answer`, after deleting the request's Redis locks if it took them.
    private func unlocked(_ hold: PendingHold, _ answer: HoldAnswer) -> HoldAnswer {
        if hold.locked, case .seats(let request) = hold.request.kind {
            locks.release(showtimeID: request.showtimeId, seatIDs: request.seatIds, holdID: hold.request.holdID)
        }
        return answer
    }

    private enum Prepared {
        case answer(HoldAnswer)
        case pending(PendingHold)
    }

    /// Everything before the database decides: the request read and checked, the caller's rights, the key,
    /// an earlier request's record (a retry is answered without Redis or row locks), Redis.
    private func prepareHold(_ call: HoldCall) -> Prepared {
        let parsed = RequestDecoder.parse(call.body)
        if case .success(let value) = parsed, BestAvailableHoldRequest.isBestAvailable(value) {
            var request: BestAvailableHoldRequest
            switch RequestDecoder.decode(BestAvailableHoldRequest.self, from: value, limits: limits) {
            case .failure(let error): return .answer(.response(Self.failure(error)))
            case .success(let decoded): request = decoded
            }
            if let refusal = call.caller.refusal(.hold, userId: request.userId) {
                return .answer(.response(Self.failure(refusal)))
            }
            switch Self.headerKey(call.headers, bodyKey: request.idempotencyKey) {
            case .failure(let error): return .answer(.response(Self.failure(error)))
            case .success(let key): request.idempotencyKey = key
            }
            let key = Self.holdKey(request.idempotencyKey, call.delivery)
            return guarded(call.delivery) { store in
                if let key, let earlier = try store.findIdempotentAnswer(userID: request.userId, key: key, request: request)
                {
                    return .answer(.response(Self.reply(earlier)))
                }
                return .pending(
                    PendingHold(
                        request: HoldBatchRequest(
                            kind: .best(request),
                            holdID: Self.makeHoldID(),
                            key: key,
                            deadline: call.delivery.deadline
                        ),
                        locked: false
                    )
                )
            }
        }

        var request: HoldRequest
        switch RequestDecoder.decode(HoldRequest.self, from: call.body, limits: limits) {
        case .failure(let error): return .answer(.response(Self.failure(error)))
        case .success(let decoded): request = decoded
        }
        if let refusal = call.caller.refusal(.hold, userId: request.userId) {
            return .answer(.response(Self.failure(refusal)))
        }
        switch Self.headerKey(call.headers, bodyKey: request.idempotencyKey) {
        case .failure(let error): return .answer(.response(Self.failure(error)))
        case .success(let key): request.idempotencyKey = key
        }
        // The key the hold is decided under: the caller's, or one made from the delivery (a redelivery then
        // replays what its first delivery committed instead of contradicting it).
        let key = Self.holdKey(request.idempotencyKey, call.delivery)
        return guarded(call.delivery) { store in
            // A retry or duplicate whose first request has committed: answered without Redis or row locks. One
            // still deciding is not visible yet; the database makes this one wait for it, no thread sleeps.
            if let key, let earlier = try store.findIdempotentAnswer(userID: request.userId, key: key, request: request)
            {
                return .answer(.response(Self.reply(earlier)))
            }
            let holdID = Self.makeHoldID()
            var locked = false
            switch locks.acquire(
                showtimeID: request.showtimeId,
                seatIDs: request.seatIds,
                holdID: holdID,
                ttlMilliseconds: Int64(configuration.holdTTLSeconds) * 1000
            ) {
            case .acquired:
                locked = true
            case .skipped:
                break
            case .taken(let holders):
                let unavailable = try confirmedUnavailable(holders, requested: request.seatIds, store: store)
                // A caller's key keeps its first answer, a refusal included: the database decides and stores
                // it, so only requests without one are refused from Redis (a derived key keeps successes only).
                if !unavailable.isEmpty, request.idempotencyKey == nil {
                    // A redelivery whose first delivery committed meanwhile replays rather than losing to it.
                    if let key,
                        let earlier = try store.findIdempotentAnswer(userID: request.userId, key: key, request: request)
                    {
                        return .answer(.response(Self.reply(earlier)))
                    }
                    return .answer(.response(Self.failure(.seatUnavailable(unavailable))))
                }
            // Every lock belongs to a hold that is not (or not yet) live: the database decides.
            }
            return .pending(
                PendingHold(
                    request: HoldBatchRequest(
                        kind: .seats(request),
                        holdID: holdID,
                        key: key,
                        deadline: call.delivery.deadline
                    ),
                    locked: locked
                )
            )
        }
    }

    private static func holdKey(_ callerKey: String?, _ delivery: DeliveryContext) -> HoldKey? {
        callerKey.map(HoldKey.caller)
            ?? delivery.messageID.map { .derived(derivedKey(brokerUser: delivery.brokerUser, messageID: $0)) }
    }

    /// Runs a preparing step with the database: `SERVICE_UNAVAILABLE` when it is down or the connection broke,
    /// no answer when the request's deadline stopped it, `.failed` for the unexpected.
    private func guarded(_ delivery: DeliveryContext, _ body: (InventoryStore) throws -> Prepared) -> Prepared {
        guard let store = database.currentStore() else { return .answer(.response(Self.unavailable)) }
        do {
            return try body(store)
        } catch {
            if let deadline = delivery.deadline, InventoryStore.isDeadlineError(error) {
                return .answer(.noAnswer(deadline: deadline))
            }
            if database.handle(error) { return .answer(.response(Self.unavailable)) }
            return .answer(.failed(error))
        }
    }
}
