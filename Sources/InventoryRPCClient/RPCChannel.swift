import AMQPClient
import Contracts
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// RPC calls over one AMQP connection, driven by the one thread that owns it (rabbitmq-c allows nothing
/// else): the thread sends, then `poll`s, and completions run on it, inside those calls.
///
/// - Direct reply-to: `amq.rabbitmq.reply-to` is consumed (no-ack) right after connecting, before any
///   publish, as RabbitMQ requires.
/// - Each request is published `mandatory` with the properties of `RPCRequest.properties`: one nobody
///   can route comes back at once and fails `unroutable` instead of timing out.
/// - Correlation and deadlines are `RPCCallTable`'s; this class only carries out its actions.
/// - A lost connection fails the calls published on it (`connectionLost`) and is thrown from the next
///   `poll` (or `call`); `connect()` opens a new one. `RPCClient` does that with back-off on a thread of
///   its own; a caller with a thread of its own (the benchmark's drivers, the fault suite's clients) may
///   drive a channel directly.
///
/// A completion may send the next call on the same channel (the benchmark keeps its pipeline full that
/// way): actions are carried out after the table has changed, never in the middle of a change.
///
/// Not `Sendable`: one thread at a time, and blocking.
public final class RPCChannel {
    public struct Configuration: Sendable {
        public var amqp: AMQPConfiguration
        /// Declared (direct, durable) after connecting. The exchange is the core's, but declaring it with
        /// the same arguments is harmless and keeps a publish before the first core started from closing
        /// the channel (404 NOT_FOUND). nil for requests through the default exchange.
        public var declareExchange: String?
        /// Properties every request of the connection carries, under the ones each request sets (for
        /// the AMQP `user_id`, which RabbitMQ checks against the login).
        public var properties: AMQPProperties
        public var whileDisconnected: RPCDisconnectedPolicy

        public init(
            amqp: AMQPConfiguration,
            declareExchange: String? = RPCOperation.exchange,
            properties: AMQPProperties = AMQPProperties(),
            whileDisconnected: RPCDisconnectedPolicy = .failAtOnce
        ) {
            self.amqp = amqp
            self.declareExchange = declareExchange
            self.properties = properties
            self.whileDisconnected = whileDisconnected
        }
    }

    public typealias Completion = (Result<RPCResponse, RPCFailure>) -> Void

    /// A class: the table moves calls between its dictionary, its actions and back, and a reference is
    /// one retain where the request's fields and the completion would be several.
    private final class Call {
        let request: RPCRequest
        let completion: Completion

        init(request: RPCRequest, completion: @escaping Completion) {
            self.request = request
            self.completion = completion
        }
    }

    private typealias Table = RPCCallTable<Call, RPCResponse, ContinuousClock.Instant>

    public let configuration: Configuration
    private let logger: Logger
    private let correlationIDs: CorrelationIDs
    private var connection: AMQPConnection?
    private var table: Table
    /// The failure that lost the connection during a send, for the next `poll` to throw.
    private var lostError: AMQPError?
    private let clock = ContinuousClock()

    /// Does not connect: call `connect()`.
    public init(configuration: Configuration, logger: Logger, correlationIDs: CorrelationIDs = CorrelationIDs()) {
        self.configuration = configuration
        self.logger = logger
        self.correlationIDs = correlationIDs
        self.table = Table(whileDisconnected: configuration.whileDisconnected)
    }

    deinit {
        connection?.close()
    }

    public var isConnected: Bool { connection != nil }

    /// Calls not answered yet.
    public var pendingCount: Int { table.pendingCount }

    /// Opens the connection (if there is none), declares the exchange, consumes direct reply-to, and
    /// publishes the calls waiting for a connection.
    public func connect() throws(AMQPError) {
        guard connection == nil else { return }
        lostError = nil
        let opened = try AMQPConnection(configuration: configuration.amqp, logger: logger)
        do throws(AMQPError) {
            if let exchange = configuration.declareExchange {
                try opened.declareExchange(exchange, type: .direct, durable: true)
            }
            // Direct reply-to must be consumed before the first publish on the channel.
            try opened.consume(queue: RPCRequest.replyQueue, noAck: true)
        } catch {
            opened.close()
            throw error
        }
        connection = opened
        perform(table.connectionEstablished(now: clock.now))
    }

    /// Starts a call due by `deadline` (by default `request.timeout` from now). `completion` runs exactly
    /// once, on this thread: right here when the call fails at once, else inside a later `poll`, `send`,
    /// `connect` or `close`.
    public func send(
        _ request: RPCRequest,
        deadline: ContinuousClock.Instant? = nil,
        completion: @escaping Completion
    ) {
        let now = clock.now
        perform(
            table.start(
                correlationID: request.correlationID ?? correlationIDs.next(),
                context: Call(request: request, completion: completion),
                deadline: deadline ?? now.advanced(by: request.timeout),
                now: now
            )
        )
    }

    /// Waits at most `timeout` — less when a call's deadline comes first — for replies and returns, or for
    /// `wakeup` (which it drains) to be signalled; then answers what arrived and what expired. With a
    /// `wakeup` it answers everything that has arrived; without one, the next reply or return (call it in a
    /// loop). Without a connection it only waits (on `wakeup`, if any) and expires. Returns whether `wakeup`
    /// was signalled.
    ///
    /// Throws the failure that lost the connection, after the calls published on it have failed
    /// `connectionLost`.
    @discardableResult
    public func poll(timeout: Duration, wakeup: EventFD? = nil) throws(AMQPError) -> Bool {
        try throwLostError()
        var wait = max(.zero, timeout)
        if let deadline = table.nextDeadline() { wait = min(wait, max(.zero, clock.now.duration(to: deadline))) }
        var woken = false
        if let connection {
            do throws(AMQPError) {
                if let wakeup {
                    let (readable, signalled) = try connection.waitForInput(wakeup: wakeup, timeout: wait)
                    woken = signalled
                    // A completion may close the connection or lose it by sending: look again every time.
                    while readable, let connection = self.connection,
                        let event = try connection.nextEvent(timeout: .zero)
                    {
                        handle(event)
                    }
                } else if let event = try connection.nextEvent(timeout: wait) {
                    // One event a call, read by rabbitmq-c itself: no poll(2) before each read and no
                    // empty read after each burst, which a thread that keeps a pipeline full would pay
                    // for every reply.
                    handle(event)
                }
            } catch {
                lose(error)
                throw error
            }
        } else {
            woken = Self.wait(for: wakeup, timeout: wait)
        }
        if woken { wakeup?.drain() }
        perform(table.expire(now: clock.now))
        try throwLostError()
        return woken
    }

    /// A blocking call: sends, then polls until this call is answered (others' completions run meanwhile).
    /// Throws the failure that lost the connection under it.
    public func call(_ request: RPCRequest) throws(AMQPError) -> Result<RPCResponse, RPCFailure> {
        var outcome: Result<RPCResponse, RPCFailure>?
        send(request) { outcome = $0 }
        while outcome == nil {
            try poll(timeout: .seconds(1))
        }
        if case .failure(.connectionLost)? = outcome { try throwLostError() }
        return outcome!
    }

    /// Closes the connection (cleanly, so what was published before is routed) and fails every call
    /// not answered yet `stopped`. `connect()` may open a new connection afterwards.
    public func close() {
        let connection = self.connection
        self.connection = nil
        lostError = nil
        connection?.close()
        perform(table.close())
    }

    // MARK: Carrying out the table's actions

    private func perform(_ actions: [Table.Action]) {
        for action in actions { perform(action) }
    }

    private func perform(_ action: Table.Action) {
        switch action {
        case .publish(let correlationID, let call, let deadline):
            publish(call, correlationID: correlationID, deadline: deadline)
        case .deliver(let call, let response):
            call.completion(.success(response))
        case .fail(let call, let failure):
            call.completion(.failure(failure))
        case .wait:
            break
        case .ignore(let correlationID):
            logger.debug("late or unknown RPC reply dropped", metadata: ["correlation_id": "\(correlationID)"])
        }
    }

    private func publish(_ call: Call, correlationID: String, deadline: ContinuousClock.Instant) {
        // No connection: an earlier publish of the same batch lost it, and the table has failed this
        // call with the others published on it.
        guard let connection else { return }
        let properties = call.request.properties(
            base: configuration.properties,
            correlationID: correlationID,
            remaining: clock.now.duration(to: deadline),
            epochMilliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        )
        do throws(AMQPError) {
            try connection.publish(
                exchange: call.request.exchange,
                routingKey: call.request.routingKey,
                body: call.request.body,
                properties: properties,
                mandatory: true
            )
        } catch {
            lostError = error
            lose(error)
        }
    }

    private func handle(_ event: AMQPEvent) {
        switch event {
        case .delivery(let message):
            guard let correlationID = message.properties.correlationID else {
                logger.debug("RPC reply without a correlation id dropped")
                return
            }
            perform(
                table.replyArrived(
                    correlationID: correlationID,
                    reply: RPCResponse(body: message.body, properties: message.properties)
                )
            )
        case .returned(let returned):
            logger.warning(
                "RPC request returned by the broker: no queue for its routing key (is the server running?)",
                metadata: [
                    "routing_key": "\(returned.routingKey)", "amqp.reply_code": "\(returned.replyCode)",
                    "correlation_id": "\(returned.properties.correlationID ?? "-")",
                ]
            )
            if let correlationID = returned.properties.correlationID {
                perform(table.requestReturned(correlationID: correlationID))
            }
        case .ack, .nack:
            break
        }
    }

    private func lose(_ error: AMQPError) {
        logger.debug("RPC connection lost", metadata: ["error": "\(error)", "rpc.pending": "\(table.pendingCount)"])
        let connection = self.connection
        self.connection = nil
        connection?.close()
        perform(table.connectionLost())
    }

    private func throwLostError() throws(AMQPError) {
        guard let error = lostError else { return }
        lostError = nil
        throw error
    }

    /// Without a connection: waits for `wakeup` or `timeout`. Returns whether `wakeup` was signalled.
    private static func wait(for wakeup: EventFD?, timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let milliseconds = Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        guard let wakeup else {
            if milliseconds > 0 { _ = Glibc.poll(nil, 0, milliseconds) }
            return false
        }
        var descriptor = pollfd(fd: wakeup.fileDescriptor, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&descriptor, 1, milliseconds) > 0
    }
}
