import Dispatch
import Foundation
import Logging
import Metrics
import RedisClient
import Synchronization

/// One budget: `quota` requests per `windowSeconds`, as a GCRA (a bucket of `quota` that refills
/// continuously). `name` is what `RateLimit-Policy` and `RateLimit` call it.
struct RatePolicy: Sendable, Hashable {
    var name: String
    var quota: Int
    var windowSeconds: Int
}

/// The budgets one request draws on together (each with the key of whom it counts: a user, an address).
struct RateCheck: Sendable {
    var items: [(key: String, policy: RatePolicy)]
}

enum RateDecision: Sendable, Equatable {
    case allowed
    /// `retryAfterSeconds`: until one more request of `policy` fits; `resetSeconds`: until its quota is
    /// full again.
    case limited(policy: RatePolicy, retryAfterSeconds: Int, resetSeconds: Int)
    /// Redis was not reachable (or answered an error): the request goes through.
    case failedOpen
}

/// Rate limits shared by every facade instance: state in Redis, one Lua script per check (GCRA over all
/// the check's keys: the request passes only if every budget has room, and only then is each charged).
/// The clock is Redis's (`TIME`), so instances with skewed clocks agree.
///
/// The handler never waits: `check` queues the check and returns; one thread owns the Redis connection,
/// sends what is queued as one pipeline and calls each completion. Redis away: every check fails open
/// (counted in `facade_rate_limit_fail_open_total`, logged once when it starts and once when it ends),
/// reconnection is tried at most once a second, so buyers never wait for a dead Redis.
final class RateLimiter: Sendable {
    /// KEYS: one per budget. ARGV: per key its quota and window (ms). Returns {allowed, index of the
    /// budget that refused (1-based, 0 if none), ms until it has room, ms until it is full again}.
    static let script = RedisScript(
        """
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        local allowed = 1
        local worst = 0
        local retry = 0
        local reset = 0
        local next_tats = {}
        for i, key in ipairs(KEYS) do
          local quota = tonumber(ARGV[2 * i - 1])
          local window = tonumber(ARGV[2 * i])
          local interval = window / quota
          local tat = tonumber(redis.call('GET', key)) or now
          if tat < now then tat = now end
          local next_tat = tat + interval
          local wait = next_tat - window - now
          if wait > 0 then
            allowed = 0
            if wait > retry then
              retry = wait
              worst = i
              reset = tat - now
            end
          end
          next_tats[i] = next_tat
        end
        if allowed == 1 then
          for i, key in ipairs(KEYS) do
            redis.call('SET', key, tostring(next_tats[i]), 'PX', math.ceil(next_tats[i] - now))
          end
        end
        return {allowed, worst, math.ceil(retry), math.ceil(reset)}
        """
    )

    private struct Pending {
        var check: RateCheck
        var completion: @Sendable (RateDecision) -> Void
    }

    private struct Queue {
        var pending: [Pending] = []
        var started = false
        var stopped = false
    }

    private let redisURL: String
    private let logger: Logger
    private let queue = Mutex(Queue())
    private let wakeup = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    /// Checks waiting beyond this are let through at once (failed open): the limiter never holds
    /// requests back by being slow.
    static let maxPending = 10_000
    private let failOpen = Counter(label: "facade_rate_limit_fail_open_total")
    /// 1 while Redis is unreachable and checks fail open.
    private let failingGauge = Gauge(label: "facade_rate_limit_failing_open")

    init(redisURL: String, logger: Logger) {
        self.redisURL = redisURL
        self.logger = logger
        failingGauge.record(0)
    }

    func start() {
        let first = queue.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started && !state.stopped
        }
        guard first else { return }
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "rate-limiter"
        thread.start()
    }

    /// Stops the thread; checks still queued fail open.
    func stop() {
        let (alreadyStopped, started, orphans) = queue.withLock { state -> (Bool, Bool, [Pending]) in
            defer {
                state.stopped = true
                if !state.started { state.pending = [] }
            }
            return (state.stopped, state.started, state.started ? [] : state.pending)
        }
        guard !alreadyStopped else { return }
        guard started else {
            // Never started: no thread to wait for; what was queued passes.
            for item in orphans { item.completion(.failedOpen) }
            return
        }
        wakeup.signal()
        finished.wait()
    }

    /// Calls `completion` (on the limiter's thread, or at once when it cannot take more) with the decision.
    func check(_ check: RateCheck, completion: @escaping @Sendable (RateDecision) -> Void) {
        let accepted = queue.withLock { state -> Bool in
            guard !state.stopped, state.pending.count < Self.maxPending else { return false }
            state.pending.append(Pending(check: check, completion: completion))
            return true
        }
        guard accepted else {
            failOpen.increment()
            completion(.failedOpen)
            return
        }
        wakeup.signal()
    }

    // MARK: The limiter's thread

    private func run() {
        var connection: RedisConnection?
        var failing = false
        var nextAttempt = ContinuousClock.now
        while true {
            wakeup.wait()
            let (batch, stopped) = queue.withLock { state in
                defer { state.pending = [] }
                return (state.pending, state.stopped)
            }
            if stopped {
                for item in batch { item.completion(.failedOpen) }
                connection?.close()
                return
            }
            guard !batch.isEmpty else { continue }
            if connection == nil, ContinuousClock.now >= nextAttempt {
                connection = try? RedisConnection(
                    url: redisURL,
                    commandTimeout: .milliseconds(250),
                    logger: logger
                )
                if connection == nil { nextAttempt = .now + .seconds(1) }
            }
            var decisions: [RateDecision]?
            if let open = connection {
                do throws(RedisError) {
                    decisions = try decide(batch.map(\.check), on: open)
                } catch {
                    logger.debug("rate limiter: Redis call failed", metadata: ["error": "\(error)"])
                    open.close()
                    connection = nil
                    nextAttempt = .now + .seconds(1)
                }
            }
            let nowFailing = decisions == nil
            if nowFailing != failing {
                failing = nowFailing
                failingGauge.record(failing ? 1 : 0)
                if failing {
                    logger.warning("rate limiter fails open: Redis unreachable; requests pass unlimited")
                } else {
                    logger.notice("rate limiter enforcing again: Redis reachable")
                }
            }
            if nowFailing { failOpen.increment(by: batch.count) }
            for (index, item) in batch.enumerated() {
                item.completion(decisions?[index] ?? .failedOpen)
            }
        }
    }

    /// One pipeline of EVALSHA (a check whose script Redis no longer has is sent again as EVAL).
    private func decide(_ checks: [RateCheck], on connection: RedisConnection) throws(RedisError) -> [RateDecision] {
        let commands = checks.map { check -> [String] in
            var arguments = ["EVALSHA", Self.script.sha1, String(check.items.count)]
            arguments += check.items.map(\.key)
            for item in check.items {
                arguments += [String(item.policy.quota), String(item.policy.windowSeconds * 1000)]
            }
            return arguments
        }
        let replies = try connection.pipeline(commands)
        var decisions: [RateDecision] = []
        decisions.reserveCapacity(checks.count)
        for (index, reply) in replies.enumerated() {
            var value: RedisValue
            switch reply {
            case .success(let success): value = success
            case .failure(let error) where error.serverCode == "NOSCRIPT":
                let check = checks[index]
                value = try connection.run(
                    Self.script,
                    keys: check.items.map(\.key),
                    arguments: check.items.flatMap {
                        [String($0.policy.quota), String($0.policy.windowSeconds * 1000)]
                    }
                )
            case .failure(let error):
                logger.error("rate limiter script failed: request let through", metadata: ["error": "\(error)"])
                failOpen.increment()
                decisions.append(.failedOpen)
                continue
            }
            decisions.append(Self.decision(value, check: checks[index]))
        }
        return decisions
    }

    static func decision(_ value: RedisValue, check: RateCheck) -> RateDecision {
        guard let parts = value.arrayValue?.compactMap(\.intValue), parts.count == 4 else { return .failedOpen }
        if parts[0] == 1 { return .allowed }
        guard (1...check.items.count).contains(parts[1]) else { return .failedOpen }
        return .limited(
            policy: check.items[parts[1] - 1].policy,
            retryAfterSeconds: max(1, (parts[2] + 999) / 1000),
            resetSeconds: max(1, (parts[3] + 999) / 1000)
        )
    }
}
