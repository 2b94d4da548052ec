import Logging
import Synchronization

/// What the process knows about its dependencies, shared by every thread of one core (for `/readyz`).
///
/// Each thread reports its own connections and logs its own losses and recoveries.
final class CoreHealth: Sendable {
    enum Dependency: String, Sendable { case database, broker }

    private let state = Mutex([Dependency: Set<String>]())

    /// `owner` (a thread name) has a working connection to `dependency`.
    func reportUp(_ dependency: Dependency, owner: String) {
        state.withLock { _ = $0[dependency, default: []].insert(owner) }
    }

    /// `owner` lost (or could not open) its connection to `dependency`.
    func reportDown(_ dependency: Dependency, owner: String) {
        state.withLock { _ = $0[dependency]?.remove(owner) }
    }

    func isUp(_ dependency: Dependency) -> Bool {
        state.withLock { !($0[dependency]?.isEmpty ?? true) }
    }

    /// Ready: at least one worker can reach both the database and the broker.
    var isReady: Bool {
        state.withLock { state in
            let database = state[.database] ?? []
            let broker = state[.broker] ?? []
            return !database.intersection(broker).isEmpty
        }
    }
}

/// A circuit breaker for Redis, shared by the threads of one core.
///
/// Redis only turns losers away early; the database decides. So when Redis fails (refused, reset, or a
/// command timed out because the server is stopped), every thread skips it until a back-off passes, and
/// then exactly one thread probes it. A stopped Redis therefore costs one command timeout per back-off
/// period, not one per request.
final class RedisCircuit: Sendable {
    private struct State {
        var open = false
        var probing = false
        var failures = 0
        var retryAt = ContinuousClock.now
    }

    private let state = Mutex(State())
    private let logger: Logger
    private let metrics: ServiceMetrics
    private let maximumBackoff: Duration

    init(logger: Logger, metrics: ServiceMetrics, maximumBackoff: Duration = .seconds(5)) {
        self.logger = logger
        self.metrics = metrics
        self.maximumBackoff = maximumBackoff
    }

    /// Whether the caller may use Redis now. When false the caller skips Redis (and counts a fallback).
    func permit() -> Bool {
        state.withLock { state in
            if !state.open { return true }
            if !state.probing && ContinuousClock.now >= state.retryAt {
                state.probing = true
                return true
            }
            return false
        }
    }

    func succeeded() {
        let recovered = state.withLock { state -> Bool in
            defer {
                state.open = false
                state.probing = false
                state.failures = 0
            }
            return state.open
        }
        if recovered {
            logger.info("Redis reachable again: seat locks back in use")
        }
    }

    func failed(_ error: any Error) {
        let opened = state.withLock { state -> Bool in
            let wasOpen = state.open
            state.failures += 1
            let exponent = min(state.failures - 1, 6)
            let delay = min(Duration.milliseconds(250) * (1 << exponent), maximumBackoff)
            state.open = true
            state.probing = false
            state.retryAt = ContinuousClock.now + delay
            return !wasOpen
        }
        if opened {
            logger.warning(
                "Redis unreachable: holds continue on the database alone",
                metadata: ["error": "\(error)"]
            )
        }
    }

    var isOpen: Bool { state.withLock { $0.open } }
}
