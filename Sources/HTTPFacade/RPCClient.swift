import AMQPClient
import Contracts
import Dispatch
import Foundation
import Logging
import ServiceSupport
import Synchronization

/// What an RPC call ends with.
enum RPCOutcome: Sendable {
    /// The core's reply body; `replayed` when the core marked it `x-idempotent-replayed: true`.
    case reply(body: [UInt8], replayed: Bool)
    case failed(RPCFailure)
}

/// The RPC client every request shares: one dedicated thread owns the AMQP connection (rabbitmq-c
/// allows nothing else), daemon threads hand it calls through a lock-protected queue and an `EventFD`,
/// and it answers each call through its completion, on its own thread.
///
/// - Direct reply-to: `amq.rabbitmq.reply-to` is consumed (no-ack) right after connecting, before any
///   publish, as RabbitMQ requires.
/// - Each request carries `correlation_id`, `reply_to`, `expiration` (the timeout in milliseconds, so the
///   broker drops a request nobody waits for) and `x-deadline` (epoch milliseconds, so a core that gets
///   it late does not act on it). It is published `mandatory`: an operation no core has declared a
///   queue for comes back at once, and is answered 503 rather than after the timeout.
/// - Broker down: `call` answers `.unavailable` at once, without touching the thread; calls pending on a
///   lost connection are answered `.unavailable` as soon as the loss is seen. The thread reconnects with
///   back-off by itself.
///
/// The bookkeeping (which call waits, until when) is `RPCCallTable`, a pure state machine.
// @unchecked Sendable: mutable state is in `shared` (a Mutex) and `connected` (an atomic); the AMQP
// connection and the call table are touched only by the client's own thread.
final class RPCClient: @unchecked Sendable {
    struct Configuration: Sendable {
        var amqp: AMQPConfiguration
        var reconnect = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
    }

    fileprivate struct Call {
        var correlationID: String
        var operation: RPCOperation
        var body: [UInt8]
        var timeout: Duration
        var completion: @Sendable (RPCOutcome) -> Void
    }

    private struct Shared {
        var submissions: [Call] = []
        var stopping = false
        var stopped = false
    }

    private let configuration: Configuration
    private let logger: Logger
    private let shared = Mutex(Shared())
    private let connected = Atomic<Bool>(false)
    private let wakeup: EventFD
    private let finished = DispatchSemaphore(value: 0)
    private let idPrefix: String
    private let nextID = Atomic<UInt64>(0)

    init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.wakeup = try EventFD()
        // Unique across processes and restarts without a UUID per call: a random prefix and a counter.
        self.idPrefix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }

    /// Whether the broker connection is up (readiness, and the fast 503).
    var isConnected: Bool { connected.load(ordering: .acquiring) }

    /// Starts the thread that owns the connection. It connects in the background: until it has,
    /// calls are answered `.unavailable`.
    func start() {
        let loop = RPCConnectionLoop(client: self)
        let thread = Thread { loop.run() }
        thread.name = "rpc-client"
        thread.start()
    }

    /// Stops the thread: calls still pending are answered `.unavailable`, the connection is closed.
    /// Call it after the HTTP side has drained. Waits at most `timeout`.
    func stop(timeout: Duration = .seconds(3)) {
        let first = shared.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        guard first else { return }
        wakeup.signal()
        let (seconds, attoseconds) = timeout.components
        _ = finished.wait(
            timeout: .now() + .milliseconds(Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
        )
    }

    /// A correlation id no other call of this process (or, by its random prefix, of another) has.
    func makeCorrelationID() -> String {
        "\(idPrefix)-\(nextID.wrappingAdd(1, ordering: .relaxed).newValue)"
    }

    /// Starts a call. `completion` runs exactly once: on the client's thread with the reply, a timeout or
    /// a lost connection, or right here when there is no connection.
    func call(
        _ operation: RPCOperation,
        body: [UInt8],
        timeout: Duration,
        correlationID: String? = nil,
        completion: @escaping @Sendable (RPCOutcome) -> Void
    ) {
        let correlationID = correlationID ?? makeCorrelationID()
        guard isConnected else {
            completion(.failed(.unavailable))
            return
        }
        let call = Call(
            correlationID: correlationID,
            operation: operation,
            body: body,
            timeout: timeout,
            completion: completion
        )
        let accepted = shared.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.submissions.append(call)
            return true
        }
        guard accepted else {
            completion(.failed(.unavailable))
            return
        }
        wakeup.signal()
    }

    // MARK: For the loop

    fileprivate var loopConfiguration: Configuration { configuration }
    fileprivate var loopLogger: Logger { logger }
    fileprivate var loopWakeup: EventFD { wakeup }

    fileprivate func setConnected(_ value: Bool) {
        connected.store(value, ordering: .releasing)
    }

    fileprivate func takeSubmissions() -> (calls: [Call], stopping: Bool) {
        shared.withLock { state in
            defer { state.submissions = [] }
            return (state.submissions, state.stopping)
        }
    }

    fileprivate func loopFinished() {
        let leftover = shared.withLock { state -> [Call] in
            state.stopped = true
            defer { state.submissions = [] }
            return state.submissions
        }
        for call in leftover { call.completion(.failed(.unavailable)) }
        finished.signal()
    }
}

/// The client's thread: owns the AMQP connection and the call table. Not Sendable; lives on one thread.
private final class RPCConnectionLoop: @unchecked Sendable {
    // @unchecked: created on the starting thread and from then on used only by the client's thread.
    private let client: RPCClient
    private var logger: Logger
    private var connection: AMQPConnection?
    private var table = RPCCallTable<RPCClient.Call, (body: [UInt8], replayed: Bool), ContinuousClock.Instant>()
    private var backoff: Backoff
    private var nextAttempt = ContinuousClock.now
    private var reportedDown = false
    private let clock = ContinuousClock()
    /// How long to wait at most when nothing is due, so heartbeats and stop are noticed.
    private let idleWait: Duration = .milliseconds(500)

    init(client: RPCClient) {
        self.client = client
        self.logger = client.loopLogger
        self.backoff = client.loopConfiguration.reconnect
    }

    func run() {
        while true {
            let now = clock.now
            if connection == nil && now >= nextAttempt {
                connect()
            }
            let (calls, stopping) = client.takeSubmissions()
            if stopping {
                for call in calls { call.completion(.failed(.unavailable)) }
                break
            }
            for call in calls { start(call) }
            perform(table.expire(now: clock.now))
            waitForWork()
        }
        perform(table.connectionLost())
        client.setConnected(false)
        connection?.close()
        connection = nil
        client.loopFinished()
        logger.debug("RPC client stopped")
    }

    private func connect() {
        do {
            let connection = try AMQPConnection(configuration: client.loopConfiguration.amqp, logger: logger)
            // The exchange is the core's, but declaring it (same arguments) is harmless and keeps a publish
            // before the first core started from closing our channel (404 NOT_FOUND).
            try connection.declareExchange(RPCOperation.exchange, type: .direct, durable: true)
            // Direct reply-to must be consumed before the first publish on the channel.
            try connection.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            self.connection = connection
            table.connectionEstablished()
            client.setConnected(true)
            backoff.reset()
            if reportedDown {
                logger.info("RPC client reconnected to the broker")
            } else {
                logger.info("RPC client connected to the broker")
            }
            reportedDown = false
        } catch {
            let delay = backoff.nextDelay()
            nextAttempt = clock.now + delay
            if !reportedDown {
                logger.warning(
                    "broker unreachable; answering 503 and retrying with back-off",
                    metadata: ["error": "\(error)"]
                )
                reportedDown = true
            } else {
                logger.debug("broker still unreachable", metadata: ["error": "\(error)", "retry.in": "\(delay)"])
            }
        }
    }

    private func connectionLost(_ error: any Error) {
        client.setConnected(false)
        let failed = table.connectionLost()
        logger.warning(
            "broker connection lost; pending calls answered 503, reconnecting",
            metadata: ["error": "\(error)", "rpc.pending": "\(failed.count)"]
        )
        reportedDown = true
        connection?.close()
        connection = nil
        perform(failed)
        // The first attempt right away: a broker that closed one connection often takes the next.
        nextAttempt = clock.now
    }

    private func start(_ call: RPCClient.Call) {
        let now = clock.now
        let action = table.start(
            correlationID: call.correlationID,
            context: call,
            deadline: now + call.timeout,
            now: now
        )
        perform([action])
    }

    private func publish(_ call: RPCClient.Call) {
        guard let connection else {
            // The table only says publish while connected; this is a bug, not a state.
            perform(table.connectionLost())
            return
        }
        let timeoutMilliseconds = max(
            1,
            Int64(call.timeout.components.seconds) * 1000
                + call.timeout.components.attoseconds / 1_000_000_000_000_000
        )
        let deadline = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) + timeoutMilliseconds
        let properties = AMQPProperties(
            contentType: ContractHeaders.contentType,
            correlationID: call.correlationID,
            replyTo: "amq.rabbitmq.reply-to",
            expiration: "\(timeoutMilliseconds)",
            // The core keys a hold without an idempotency key by it, so a redelivery replays (rule 9).
            messageID: call.correlationID,
            headers: [ContractHeaders.deadline: .int(deadline)]
        )
        do {
            try connection.publish(
                exchange: RPCOperation.exchange,
                routingKey: call.operation.routingKey,
                body: call.body,
                properties: properties,
                mandatory: true
            )
        } catch {
            connectionLost(error)
        }
    }

    private func perform(
        _ actions: [RPCCallTable<RPCClient.Call, (body: [UInt8], replayed: Bool), ContinuousClock.Instant>.Action]
    ) {
        for action in actions {
            switch action {
            case .publish(_, let call):
                publish(call)
            case .deliver(let call, let reply):
                call.completion(.reply(body: reply.body, replayed: reply.replayed))
            case .fail(let call, let failure):
                call.completion(.failed(failure))
            case .ignore(let correlationID):
                logger.debug("late or unknown RPC reply dropped", metadata: ["correlation_id": "\(correlationID)"])
            }
        }
    }

    /// Blocks until a reply, a submission, the next deadline, the next connection attempt or `idleWait`.
    private func waitForWork() {
        let now = clock.now
        var until = now + idleWait
        if let deadline = table.nextDeadline() { until = min(until, deadline) }
        if connection == nil { until = min(until, nextAttempt) }
        let timeout = max(.zero, now.duration(to: until))
        guard let connection else {
            var descriptor = pollfd(fd: client.loopWakeup.fileDescriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(
                clamping: timeout.components.seconds * 1000
                    + (timeout.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
            )
            if poll(&descriptor, 1, milliseconds) > 0 { client.loopWakeup.drain() }
            return
        }
        do {
            let (readable, woken) = try connection.waitForInput(wakeup: client.loopWakeup, timeout: timeout)
            if woken { client.loopWakeup.drain() }
            if readable {
                while let event = try connection.nextEvent(timeout: .zero) {
                    handle(event)
                }
            }
        } catch {
            connectionLost(error)
        }
    }

    private func handle(_ event: AMQPEvent) {
        switch event {
        case .delivery(let message):
            guard let correlationID = message.properties.correlationID else {
                logger.debug("RPC reply without a correlation id dropped")
                return
            }
            let replayed: Bool
            switch message.properties.headers[ContractHeaders.amqpIdempotentReplayed] {
            case .bool(true)?: replayed = true
            case .string(let text)?: replayed = text.lowercased() == "true"
            case .int(let number)?: replayed = number != 0
            default: replayed = false
            }
            perform([table.replyArrived(correlationID: correlationID, reply: (message.body, replayed))])
        case .returned(let returned):
            logger.warning(
                "RPC request returned by the broker: no queue for the operation (is the core running?)",
                metadata: [
                    "routing_key": "\(returned.routingKey)", "amqp.reply_code": "\(returned.replyCode)",
                    "correlation_id": "\(returned.properties.correlationID ?? "-")",
                ]
            )
            if let correlationID = returned.properties.correlationID {
                perform([table.requestReturned(correlationID: correlationID)])
            }
        case .ack, .nack:
            break
        }
    }
}
