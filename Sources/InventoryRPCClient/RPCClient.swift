import AMQPClient
import Dispatch
import Foundation
import Logging
import ServiceSupport
import Synchronization

/// The RPC client for callers on any thread (the facade's libmicrohttpd threads, the gateway's event
/// loops): one dedicated thread owns an `RPCChannel` (rabbitmq-c allows nothing else); callers hand it
/// calls through a lock-protected queue and an `EventFD`, and it answers each through its completion, on
/// its own thread. It waits on the AMQP socket and the EventFD together (decision 0001).
///
/// - It connects in the background and reconnects with back-off (`ServiceSupport.Backoff`), the first
///   attempt after a loss at once. Calls in flight on a lost connection fail `connectionLost`.
/// - Without a connection, calls fail `notConnected` at once (`.failAtOnce`, without touching the
///   thread) or wait for one until their deadline (`.waitForConnection`).
/// - A call's deadline starts when `call` is made: time spent queued or waiting for a connection counts.
///
/// - Several broker addresses (the nodes of a cluster, in one `RABBITMQ_URL`: decision 0025) are tried
///   by each connect (`AMQPConnection`), starting at the next address each time: a client whose node died
///   reconnects to a live one at its first attempt.
// @unchecked Sendable: mutable state is in `shared` (a Mutex) and `connected` (an atomic); the channel is
// touched only by the client's own thread.
public final class RPCClient: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var channel: RPCChannel.Configuration
        public var reconnect: Backoff
        /// The name of the client's thread (and its logs' `rpc.client`).
        public var name: String

        public init(
            amqp: AMQPConfiguration,
            whileDisconnected: RPCDisconnectedPolicy = .failAtOnce,
            reconnect: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5)),
            name: String = "rpc-client"
        ) {
            self.channel = RPCChannel.Configuration(amqp: amqp, whileDisconnected: whileDisconnected)
            self.reconnect = reconnect
            self.name = name
        }
    }

    public typealias Completion = @Sendable (Result<RPCResponse, RPCFailure>) -> Void

    fileprivate struct Submission {
        var request: RPCRequest
        var deadline: ContinuousClock.Instant
        var completion: Completion
    }

    private struct Shared {
        var submissions: [Submission] = []
        var started = false
        var stopping = false
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
    }

    public let configuration: Configuration
    private let logger: Logger
    private let shared = Mutex(Shared())
    private let connected = Atomic<Bool>(false)
    private let wakeup: EventFD
    private let finished = DispatchSemaphore(value: 0)
    private let correlationIDs = CorrelationIDs()

    public init(configuration: Configuration, logger: Logger) throws(AMQPError) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "rpc.client"] = "\(configuration.name)"
        self.logger = logger
        self.wakeup = try EventFD()
    }

    /// Whether the broker connection is up (readiness, and the fast failure).
    public var isConnected: Bool { connected.load(ordering: .acquiring) }

    /// Starts the thread that owns the connection; it connects in the background.
    public func start() {
        let first = shared.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started && !state.stopping
        }
        guard first else { return }
        let thread = Thread { [self] in run() }
        thread.name = configuration.name
        thread.start()
    }

    /// A correlation id no other call of this process (or, by its random prefix, of another) has.
    public func makeCorrelationID() -> String {
        correlationIDs.next()
    }

    /// Starts a call. `completion` runs exactly once: on the client's thread, or right here when the call
    /// fails at once (no connection with `.failAtOnce`, or the client stopped).
    public func call(_ request: RPCRequest, completion: @escaping Completion) {
        if configuration.channel.whileDisconnected == .failAtOnce && !isConnected {
            completion(.failure(.notConnected))
            return
        }
        let submission = Submission(
            request: request,
            deadline: ContinuousClock.now.advanced(by: request.timeout),
            completion: completion
        )
        let accepted = shared.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.submissions.append(submission)
            return true
        }
        guard accepted else {
            completion(.failure(.stopped))
            return
        }
        wakeup.signal()
    }

    /// `call` for async callers: suspends (without blocking a thread) until the call is answered.
    public func call(_ request: RPCRequest) async -> Result<RPCResponse, RPCFailure> {
        await withCheckedContinuation { continuation in
            call(request) { continuation.resume(returning: $0) }
        }
    }

    /// Stops the thread: calls not answered yet fail `stopped`, the connection is closed. Blocks at most
    /// `timeout` for the thread to finish; never call it on Swift's cooperative pool (use `shutdown()`).
    public func stop(timeout: Duration = .seconds(3)) {
        guard requestStop() else { return }
        let (seconds, attoseconds) = timeout.components
        _ = finished.wait(
            timeout: .now() + .milliseconds(Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
        )
    }

    /// `stop()` for async callers: returns once the thread has finished.
    public func shutdown() async {
        _ = requestStop()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = shared.withLock { state -> Bool in
                if !state.finished { state.finishWaiters.append(continuation) }
                return state.finished
            }
            if done { continuation.resume() }
        }
    }

    /// Returns whether this call stopped a running thread (which `stop` then waits for).
    private func requestStop() -> Bool {
        let (first, started) = shared.withLock { state -> (Bool, Bool) in
            defer { state.stopping = true }
            return (!state.stopping, state.started)
        }
        guard first else { return false }
        guard started else {
            finish()
            return false
        }
        wakeup.signal()
        return true
    }

    // MARK: The client's thread

    private func run() {
        let clock = ContinuousClock()
        let channel = RPCChannel(configuration: configuration.channel, logger: logger, correlationIDs: correlationIDs)
        var backoff = configuration.reconnect
        var nextAttempt = clock.now
        var everConnected = false
        var reportedDown = false
        // How long to wait at most when nothing is due, so that heartbeats and stop are noticed.
        let idleWait: Duration = .milliseconds(500)
        while true {
            if !channel.isConnected && clock.now >= nextAttempt {
                do throws(AMQPError) {
                    try channel.connect()
                    connected.store(true, ordering: .releasing)
                    backoff.reset()
                    logger.info(
                        everConnected ? "RPC client reconnected to the broker" : "RPC client connected to the broker"
                    )
                    everConnected = true
                    reportedDown = false
                } catch {
                    let delay = backoff.nextDelay()
                    nextAttempt = clock.now.advanced(by: delay)
                    if reportedDown {
                        logger.debug(
                            "broker still unreachable",
                            metadata: ["error": "\(error)", "retry.in": "\(delay)"]
                        )
                    } else {
                        logger.warning(
                            "RPC client cannot reach the broker; retrying with back-off",
                            metadata: ["error": "\(error)", "retry.in": "\(delay)"]
                        )
                        reportedDown = true
                    }
                }
            }
            let (submissions, stopping) = takeSubmissions()
            if stopping {
                for submission in submissions { submission.completion(.failure(.stopped)) }
                break
            }
            for submission in submissions {
                channel.send(submission.request, deadline: submission.deadline, completion: submission.completion)
            }
            var wait = idleWait
            if !channel.isConnected { wait = min(wait, max(.zero, clock.now.duration(to: nextAttempt))) }
            do throws(AMQPError) {
                try channel.poll(timeout: wait, wakeup: wakeup)
            } catch {
                connected.store(false, ordering: .releasing)
                logger.warning(
                    "RPC client lost the broker connection; calls in flight failed, reconnecting",
                    metadata: ["error": "\(error)"]
                )
                reportedDown = true
                // The first attempt at once: a broker that closed one connection often takes the next.
                nextAttempt = clock.now
            }
        }
        connected.store(false, ordering: .releasing)
        channel.close()
        finish()
        logger.debug("RPC client stopped")
    }

    private func takeSubmissions() -> (submissions: [Submission], stopping: Bool) {
        shared.withLock { state in
            defer { state.submissions = [] }
            return (state.submissions, state.stopping)
        }
    }

    /// Fails what is still queued and lets `stop` and `shutdown` return.
    private func finish() {
        let (leftover, waiters) = shared.withLock { state -> ([Submission], [CheckedContinuation<Void, Never>]) in
            state.finished = true
            defer {
                state.submissions = []
                state.finishWaiters = []
            }
            return (state.submissions, state.finishWaiters)
        }
        for submission in leftover { submission.completion(.failure(.stopped)) }
        finished.signal()
        for waiter in waiters { waiter.resume() }
    }
}
