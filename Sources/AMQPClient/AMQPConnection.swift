internal import CRabbitMQ
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The owner of one rabbitmq-c connection with one channel (channel 1).
///
/// Not `Sendable`: one thread at a time, and blocking — never call it from Swift's cooperative pool.
///
/// **Failures close the connection.** After a connection-level failure (socket error, heartbeat timeout,
/// the broker closing the connection) *and* after the broker closes the channel (a passive declare of a
/// missing queue, 404; publishing to a missing exchange, 404; a direct reply-to publish without its
/// consumer, 406; ...), this object closes the whole connection: the channel's consumers, prefetch and
/// confirm mode are gone with the channel, so silently reopening it would leave the caller with a
/// different channel than it set up. The call that sees the failure throws it with the broker's words
/// and reply code; `isOpen` is then false and every later call throws `connectionClosed` at once.
/// Make a new `AMQPConnection` to carry on.
///
/// **Heartbeats.** rabbitmq-c has no background thread: heartbeats are sent and checked only while
/// this object is inside the library. `nextEvent(timeout:)` and `waitForInput(wakeup:timeout:)` both
/// keep them, so a thread that loops on either (with any timeouts) stays alive:
///
/// ```swift
/// while running {
///     let (readable, woken) = try connection.waitForInput(wakeup: eventFD, timeout: .seconds(1))
///     if woken { eventFD.drain(); /* take work from other threads, publish */ }
///     if readable {
///         while let event = try connection.nextEvent(timeout: .zero) { handle(event) }
///     }
/// }
/// ```
///
/// Drain `nextEvent(timeout: .zero)` until it returns nil after a readable wake-up: one socket read may
/// bring several frames, and `waitForInput` reports buffered ones as readable again right away.
/// A thread that stays out of the library longer than about two heartbeat intervals loses the connection
/// (measured with a 1 s heartbeat: 2.5 s away survived, 3.5 s did not); the next call then throws.
public final class AMQPConnection {
    public let configuration: AMQPConfiguration
    private let logger: Logger
    private var state: amqp_connection_state_t?
    private let channel: amqp_channel_t = 1
    /// Why the connection closed, for the error every later call throws.
    private var closeReason: AMQPError?
    private var confirmsEnabled = false
    private var nextPublishTag: UInt64 = 1
    /// Events read while `waitForInput` let rabbitmq-c keep heartbeats; `nextEvent` returns them first.
    private var pending: [AMQPEvent] = []
    /// The negotiated heartbeat interval; `.zero` when off.
    private var heartbeatInterval: Duration = .zero
    /// The largest delivery body `nextEvent` reads into memory; nil: any (rabbitmq-c's own reading, which keeps
    /// the pool pages of the largest message read for the connection's life). Set, deliveries are read frame by
    /// frame, the pool recycled after each, and a delivery announcing more than this still arrives, so the
    /// consumer can answer and acknowledge it, but with an empty `body` and `bodyDropped` set: its body frames
    /// are taken from the socket one at a time and dropped, so no more than one frame (`frame_max`, 128 KiB)
    /// of it is ever in memory.
    public var maxBodySize: Int?
    /// When rabbitmq-c last had the chance to send and check heartbeats (`amqp_consume_message`).
    private var lastLibraryRead: ContinuousClock.Instant
    private let clock = ContinuousClock()

    /// Connects (TCP with `connectTimeout`), logs in with PLAIN, negotiates heartbeats and opens channel 1.
    ///
    /// With several addresses (`AMQPConfiguration.otherEndpoints`, the nodes of one cluster), it tries them
    /// in turn until one accepts, starting each new connection of the process at the next address in the
    /// list: connections spread over the nodes, and one that lost its node goes on to another. A refusal
    /// no other node would reverse (a wrong password, an unknown vhost) ends the attempt at once; when every
    /// address fails, the last address's error is thrown. `configuration` is then the one connected to.
    public init(configuration: AMQPConfiguration, logger: Logger) throws(AMQPError) {
        let endpoints = configuration.endpoints
        let first =
            endpoints.count > 1 ? Int(Self.nextStart.add(1, ordering: .relaxed).oldValue % UInt(endpoints.count)) : 0
        var lastError: AMQPError?
        var opened: (amqp_connection_state_t, AMQPConfiguration)?
        for offset in 0..<endpoints.count {
            var attempt = configuration
            let endpoint = endpoints[(first + offset) % endpoints.count]
            attempt.host = endpoint.host
            attempt.port = endpoint.port
            do {
                opened = (try Self.open(attempt, logger: logger), attempt)
                break
            } catch {
                lastError = error
                guard error.isRetryable else { break }
                if endpoints.count > 1 {
                    logger.info(
                        "AMQP node unavailable; trying the next address",
                        metadata: ["amqp.host": "\(endpoint)", "error": "\(error)"])
                }
            }
        }
        guard let (state, connected) = opened else {
            throw lastError ?? AMQPError(kind: .connectionFailed, message: "no broker address", isRetryable: false)
        }
        self.configuration = connected
        var logger = logger
        logger[metadataKey: "amqp.host"] = "\(connected.host):\(connected.port)"
        logger[metadataKey: "amqp.vhost"] = "\(connected.vhost)"
        self.logger = logger
        self.lastLibraryRead = clock.now
        heartbeatInterval = .seconds(Int(amqp_get_heartbeat(state)))
        self.state = state
        logger.info(
            "AMQP connection open",
            metadata: [
                "amqp.heartbeat": "\(heartbeatInterval)",
                "amqp.connection_name": "\(connected.connectionName ?? "")",
            ])
    }

    /// Where the next connection of this process starts in a list of addresses.
    private static let nextStart = Atomic<UInt>(0)

    /// One node: TCP, login, channel 1.
    private static func open(
        _ configuration: AMQPConfiguration, logger: Logger
    ) throws(AMQPError) -> amqp_connection_state_t {
        let endpoint = "\(configuration.host):\(configuration.port)"
        guard let state = amqp_new_connection() else {
            throw AMQPError(kind: .connectionFailed, message: "amqp_new_connection: out of memory", isRetryable: true)
        }
        guard let socket = amqp_tcp_socket_new(state) else {
            amqp_destroy_connection(state)
            throw AMQPError(kind: .connectionFailed, message: "amqp_tcp_socket_new failed", isRetryable: true)
        }
        var connectTimeout = configuration.connectTimeout.timeval
        let status = amqp_socket_open_noblock(socket, configuration.host, Int32(configuration.port), &connectTimeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            amqp_destroy_connection(state)
            let kind: AMQPError.Kind = status == AMQP_STATUS_TIMEOUT.rawValue ? .timeout : .connectionFailed
            throw AMQPError(
                kind: kind, message: "cannot connect to \(endpoint): \(libraryErrorText(status))", isRetryable: true)
        }
        _ = amqp_set_handshake_timeout(state, &connectTimeout)
        var requestTimeout = configuration.requestTimeout.timeval
        _ = amqp_set_rpc_timeout(state, &requestTimeout)

        let login = withArena { arena in
            var clientProperties = arena.table(
                configuration.connectionName.map { ["connection_name": .string($0)] } ?? [:])
            return crabbitmq_login_plain_with_properties(
                state, configuration.vhost, 0, 131_072, Self.heartbeatSeconds(configuration.heartbeat),
                &clientProperties,
                configuration.user, configuration.password)
        }
        if login.reply_type != AMQP_RESPONSE_NORMAL {
            var (error, teardown) = Self.translate(login, context: "login to \(endpoint)")
            switch error.kind {
            case .connectionClosed where error.replyCode == 403:
                error.kind = .authenticationFailed
            case .connectionClosed, .channelClosed, .protocolError:
                error.kind = .connectionFailed
            default:
                break
            }
            if error.replyCode == nil && error.kind != .timeout {
                // Brokers that do not announce authentication failures just drop the socket.
                error.message += " (the broker closed the connection during login: wrong user, password or vhost?)"
            }
            Self.shutdown(state, teardown, channel: 1)
            logger.info("AMQP login failed", metadata: ["amqp.host": "\(endpoint)", "error": "\(error)"])
            throw error
        }

        _ = amqp_channel_open(state, 1)
        let open = amqp_get_rpc_reply(state)
        if open.reply_type != AMQP_RESPONSE_NORMAL {
            let (error, teardown) = Self.translate(open, context: "channel.open")
            Self.shutdown(state, teardown, channel: 1)
            throw error
        }
        return state
    }

    deinit {
        close()
    }

    public var isOpen: Bool { state != nil }

    // MARK: Topology

    /// Declares an exchange. `passive` only checks that it exists (a missing one is 404 NOT_FOUND, which
    /// closes this connection like every channel error); RabbitMQ asks no permission for that, while a
    /// real declare needs the `configure` permission on the exchange.
    public func declareExchange(
        _ name: String, type: ExchangeType, durable: Bool = true, passive: Bool = false
    ) throws(AMQPError) {
        let state = try openState()
        withArena { arena in
            _ = amqp_exchange_declare(
                state, channel, arena.bytes(name), arena.bytes(type.rawValue), passive ? 1 : 0,
                durable ? 1 : 0, 0, 0, amqp_empty_table)
        }
        try check(amqp_get_rpc_reply(state), "exchange.declare \(name)")
        logger.debug("AMQP exchange declared", metadata: ["amqp.exchange": "\(name)"])
    }

    /// Declares a queue; an empty `name` lets the broker make one up. Returns the queue's name. A durable,
    /// non-exclusive, non-auto-delete queue gets `configuration.durableQueueType` (`x-queue-type`) when that
    /// is set and `arguments` names no type: a cluster's RPC queues become quorum queues without their
    /// declaring code knowing (decision 0025). Redeclaring a queue with another type is refused (406).
    @discardableResult
    public func declareQueue(
        _ name: String = "", durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
        arguments: [String: AMQPFieldValue] = [:]
    ) throws(AMQPError) -> String {
        let state = try openState()
        var arguments = arguments
        if let queueType = configuration.durableQueueType, durable, !exclusive, !autoDelete,
            arguments["x-queue-type"] == nil
        {
            arguments["x-queue-type"] = .string(queueType)
        }
        let declared: String? = withArena { arena in
            amqp_queue_declare(
                state, channel, arena.bytes(name), 0, durable ? 1 : 0, exclusive ? 1 : 0, autoDelete ? 1 : 0,
                arena.table(arguments)
            ).map { $0.pointee.queue.string }
        }
        try check(amqp_get_rpc_reply(state), "queue.declare \(name)")
        guard let declared else { throw protocolError("queue.declare \(name): no declare-ok") }
        logger.debug("AMQP queue declared", metadata: ["amqp.queue": "\(declared)"])
        return declared
    }

    /// A passive declare: the queue's ready message and consumer counts. A missing queue is a channel error
    /// (404 NOT_FOUND), which closes this connection like every channel error.
    public func inspectQueue(_ name: String) throws(AMQPError) -> (messageCount: Int, consumerCount: Int) {
        let state = try openState()
        let counts: (Int, Int)? = withArena { arena in
            amqp_queue_declare(state, channel, arena.bytes(name), 1, 0, 0, 0, amqp_empty_table)
                .map { (Int($0.pointee.message_count), Int($0.pointee.consumer_count)) }
        }
        try check(amqp_get_rpc_reply(state), "queue.declare passive \(name)")
        guard let counts else { throw protocolError("queue.declare passive \(name): no declare-ok") }
        return (messageCount: counts.0, consumerCount: counts.1)
    }

    public func bindQueue(_ queue: String, exchange: String, routingKey: String) throws(AMQPError) {
        let state = try openState()
        withArena { arena in
            _ = amqp_queue_bind(
                state, channel, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), amqp_empty_table)
        }
        try check(amqp_get_rpc_reply(state), "queue.bind \(queue) to \(exchange)")
    }

    public func deleteQueue(_ name: String) throws(AMQPError) {
        let state = try openState()
        withArena { arena in
            _ = amqp_queue_delete(state, channel, arena.bytes(name), 0, 0)
        }
        try check(amqp_get_rpc_reply(state), "queue.delete \(name)")
    }

    public func deleteExchange(_ name: String) throws(AMQPError) {
        let state = try openState()
        withArena { arena in
            _ = amqp_exchange_delete(state, channel, arena.bytes(name), 0)
        }
        try check(amqp_get_rpc_reply(state), "exchange.delete \(name)")
    }

    // MARK: Publishing

    /// basic.qos on the channel: at most `count` unacknowledged deliveries per consumer (0: no limit), or per
    /// channel (`perChannel`).
    ///
    /// `perChannel`: RabbitMQ's reading of `global = true`: the limit is shared by every consumer of the
    /// channel, instead of applying to each consumer started afterwards. Quorum queues refuse a consumer on a
    /// channel with a global limit (540 NOT_IMPLEMENTED): with `configuration.durableQueueType` "quorum" the
    /// limit is set per consumer instead, so a channel consuming K queues may hold K times `count` (decision
    /// 0025).
    public func setPrefetch(_ count: UInt16, perChannel: Bool = false) throws(AMQPError) {
        let state = try openState()
        let global = perChannel && configuration.durableQueueType != "quorum"
        _ = amqp_basic_qos(state, channel, 0, count, global ? 1 : 0)
        try check(amqp_get_rpc_reply(state), "basic.qos")
    }

    /// confirm.select: from now on every publish is confirmed with `.ack` / `.nack` from `nextEvent`.
    public func enablePublisherConfirms() throws(AMQPError) {
        let state = try openState()
        guard !confirmsEnabled else { return }
        _ = amqp_confirm_select(state, channel)
        try check(amqp_get_rpc_reply(state), "confirm.select")
        confirmsEnabled = true
        nextPublishTag = 1
    }

    /// Returns the delivery tag the broker will confirm (0 when confirms are off).
    ///
    /// Publishing is asynchronous: a publish to a missing exchange is accepted here, and the broker's
    /// channel close (404) surfaces from the next `nextEvent` or synchronous call.
    @discardableResult
    public func publish(
        exchange: String, routingKey: String, body: [UInt8], properties: AMQPProperties = .init(),
        mandatory: Bool = false
    ) throws(AMQPError) -> UInt64 {
        let state = try openState()
        let status = withArena { arena in
            var basicProperties = arena.properties(properties)
            return body.withUnsafeBytes { raw in
                amqp_basic_publish(
                    state, channel, arena.bytes(exchange), arena.bytes(routingKey), mandatory ? 1 : 0, 0,
                    &basicProperties,
                    amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress)))
            }
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw fail(Self.libraryError(status, context: "basic.publish"), state: state, .broken)
        }
        guard confirmsEnabled else { return 0 }
        defer { nextPublishTag += 1 }
        return nextPublishTag
    }

    // MARK: Consuming

    /// basic.consume; returns the consumer tag the broker chose.
    @discardableResult
    public func consume(queue: String, noAck: Bool = false, exclusive: Bool = false) throws(AMQPError) -> String {
        let state = try openState()
        let tag: String? = withArena { arena in
            amqp_basic_consume(
                state, channel, arena.bytes(queue), amqp_bytes_t(len: 0, bytes: nil), 0, noAck ? 1 : 0,
                exclusive ? 1 : 0, amqp_empty_table
            ).map { $0.pointee.consumer_tag.string }
        }
        try check(amqp_get_rpc_reply(state), "basic.consume \(queue)")
        guard let tag else { throw protocolError("basic.consume \(queue): no consume-ok") }
        logger.debug("AMQP consuming", metadata: ["amqp.queue": "\(queue)", "amqp.consumer_tag": "\(tag)"])
        return tag
    }

    /// basic.cancel. Deliveries already on their way may still arrive from `nextEvent`.
    public func cancel(consumerTag: String) throws(AMQPError) {
        let state = try openState()
        withArena { arena in
            _ = amqp_basic_cancel(state, channel, arena.bytes(consumerTag))
        }
        try check(amqp_get_rpc_reply(state), "basic.cancel \(consumerTag)")
    }

    public func ack(deliveryTag: UInt64, multiple: Bool = false) throws(AMQPError) {
        let state = try openState()
        let status = amqp_basic_ack(state, channel, deliveryTag, multiple ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw fail(Self.libraryError(status, context: "basic.ack"), state: state, .broken)
        }
    }

    public func reject(deliveryTag: UInt64, requeue: Bool) throws(AMQPError) {
        let state = try openState()
        let status = amqp_basic_reject(state, channel, deliveryTag, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw fail(Self.libraryError(status, context: "basic.reject"), state: state, .broken)
        }
    }

    /// Next delivery / confirm / return; nil when `timeout` passes first. Heartbeats are handled inside.
    /// `.zero` only takes what has already arrived (and still sends a due heartbeat).
    public func nextEvent(timeout: Duration) throws(AMQPError) -> AMQPEvent? {
        guard let state else { throw closedError() }
        if !pending.isEmpty { return pending.removeFirst() }
        let deadline = clock.now.advanced(by: Self.clamped(timeout))
        while true {
            switch try readOne(state, timeout: clock.now.duration(to: deadline)) {
            case .event(let event):
                return event
            case .timedOut:
                return nil
            case .nothing:
                if clock.now >= deadline { return nil }
            }
        }
    }

    /// Blocks until the socket (or data rabbitmq-c already buffered) is readable, `wakeup` was signalled,
    /// or `timeout` passed. Lets one thread own the connection and still take work from others.
    ///
    /// Heartbeats are kept while waiting: at least every half heartbeat interval the wait lets rabbitmq-c
    /// send a due heartbeat and notice a silent broker (an event read then is kept for `nextEvent`).
    /// `woken` does not reset the EventFD: `drain()` it.
    public func waitForInput(wakeup: EventFD?, timeout: Duration) throws(AMQPError) -> (readable: Bool, woken: Bool) {
        guard let state else { throw closedError() }
        let deadline = clock.now.advanced(by: Self.clamped(timeout))
        let socket = amqp_get_sockfd(state)
        while true {
            // poll() cannot see frames rabbitmq-c already read from the socket.
            let buffered = !pending.isEmpty || amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0
            let now = clock.now
            var wait = buffered ? .zero : now.duration(to: deadline)
            if !buffered && heartbeatInterval > .zero {
                let heartbeatDue = lastLibraryRead.advanced(by: heartbeatInterval / 2)
                if now >= heartbeatDue {
                    if case .event(let event) = try readOne(state, timeout: .zero) {
                        pending.append(event)
                    }
                    continue
                }
                wait = min(wait, now.duration(to: heartbeatDue))
            }
            var descriptors = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0)]
            if let wakeup {
                descriptors.append(pollfd(fd: wakeup.fileDescriptor, events: Int16(POLLIN), revents: 0))
            }
            let ready = poll(&descriptors, nfds_t(descriptors.count), wait.pollMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw fail(
                    AMQPError(
                        kind: .connectionClosed, message: "poll: \(String(cString: strerror(errno)))",
                        isRetryable: true),
                    state: state, .broken)
            }
            let readable = buffered || descriptors[0].revents != 0
            let woken = descriptors.count > 1 && descriptors[1].revents & Int16(POLLIN) != 0
            if readable || woken || clock.now >= deadline {
                return (readable: readable, woken: woken)
            }
        }
    }

    // MARK: Closing

    /// Clean close (channel.close, connection.close, then the socket); idempotent. Waits at most about
    /// two seconds for a broker that does not answer.
    public func close() {
        guard let state else { return }
        self.state = nil
        if closeReason == nil {
            closeReason = AMQPError(kind: .connectionClosed, message: "closed by the application", isRetryable: true)
        }
        var closeTimeout = min(configuration.requestTimeout, .seconds(1)).timeval
        _ = amqp_set_rpc_timeout(state, &closeTimeout)
        let channelClose = amqp_channel_close(state, channel, AMQP_REPLY_SUCCESS)
        switch channelClose.reply_type {
        case AMQP_RESPONSE_SERVER_EXCEPTION where channelClose.reply.id == crabbitmq_connection_close_method:
            // The broker is closing the connection itself: just confirm.
            var closeOK = amqp_connection_close_ok_t()
            _ = amqp_send_method(state, 0, crabbitmq_connection_close_ok_method, &closeOK)
        case AMQP_RESPONSE_NORMAL, AMQP_RESPONSE_SERVER_EXCEPTION:
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        default:
            break  // The socket is gone (or timed out): nothing to say goodbye on.
        }
        amqp_destroy_connection(state)
        logger.debug("AMQP connection closed")
    }

    // MARK: Internals

    /// The local and remote `address:port` of the socket, as RabbitMQ names connections (tests use it to
    /// find their own connection).
    func socketEndpoints() -> (local: String, peer: String)? {
        guard let state else { return nil }
        let socket = amqp_get_sockfd(state)
        func describe(_ get: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32)
            -> String?
        {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let result = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { get(socket, $0, &length) }
            }
            guard result == 0, Int32(storage.ss_family) == AF_INET else { return nil }
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address -> String in
                    var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                    var inAddress = address.pointee.sin_addr
                    inet_ntop(AF_INET, &inAddress, &text, socklen_t(text.count))
                    let host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    return "\(host):\(UInt16(bigEndian: address.pointee.sin_port))"
                }
            }
        }
        guard let local = describe({ getsockname($0, $1, $2) }), let peer = describe({ getpeername($0, $1, $2) })
        else { return nil }
        return (local, peer)
    }

    private enum Read {
        case event(AMQPEvent)
        /// A frame that is no event (a consumer cancelled by the broker, connection.blocked, ...).
        case nothing
        case timedOut
    }

    /// What to do with the handle once a failure was seen.
    private enum Teardown {
        /// The broker sent channel.close: answer close-ok, then close the connection cleanly.
        case channelClosedByServer
        /// The broker sent connection.close: answer close-ok.
        case connectionClosedByServer
        /// The socket or the protocol state is gone: just free everything.
        case broken
    }

    private func openState() throws(AMQPError) -> amqp_connection_state_t {
        guard let state else { throw closedError() }
        // Frees what earlier replies and frames used; everything of theirs was copied out already.
        amqp_maybe_release_buffers(state)
        return state
    }

    private func closedError() -> AMQPError {
        let reason = closeReason.map { ": \($0.message)" } ?? ""
        return AMQPError(
            kind: .connectionClosed, message: "the connection is closed\(reason)", replyCode: closeReason?.replyCode,
            isRetryable: true)
    }

    private func protocolError(_ message: String) -> AMQPError {
        AMQPError(kind: .protocolError, message: message, isRetryable: true)
    }

    /// Throws (and closes the connection) unless `reply` is normal.
    private func check(_ reply: amqp_rpc_reply_t, _ context: String) throws(AMQPError) {
        guard reply.reply_type != AMQP_RESPONSE_NORMAL else { return }
        guard let state else { throw closedError() }
        let (error, teardown) = Self.translate(reply, context: context)
        throw fail(error, state: state, teardown)
    }

    /// Closes the connection after `error`; returns `error` for the caller to throw.
    private func fail(_ error: AMQPError, state: amqp_connection_state_t, _ teardown: Teardown) -> AMQPError {
        self.state = nil
        closeReason = error
        pending.removeAll()
        Self.shutdown(state, teardown, channel: channel)
        logger.info("AMQP connection lost", metadata: ["error": "\(error)"])
        return error
    }

    /// AMQP negotiates whole seconds: a sub-second heartbeat becomes 1 s rather than off.
    private static func heartbeatSeconds(_ heartbeat: Duration) -> Int32 {
        guard heartbeat > .zero else { return 0 }
        return max(1, heartbeat.wholeSeconds)
    }

    /// Keeps deadline arithmetic from overflowing on absurd timeouts; a day is "forever" for a wait loop.
    private static func clamped(_ timeout: Duration) -> Duration {
        min(timeout, .seconds(86_400))
    }

    private static func shutdown(_ state: amqp_connection_state_t, _ teardown: Teardown, channel: amqp_channel_t) {
        switch teardown {
        case .channelClosedByServer:
            var closeOK = amqp_channel_close_ok_t()
            _ = amqp_send_method(state, channel, crabbitmq_channel_close_ok_method, &closeOK)
            var shortTimeout = Duration.seconds(1).timeval
            _ = amqp_set_rpc_timeout(state, &shortTimeout)
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        case .connectionClosedByServer:
            var closeOK = amqp_connection_close_ok_t()
            _ = amqp_send_method(state, 0, crabbitmq_connection_close_ok_method, &closeOK)
        case .broken:
            break
        }
        amqp_destroy_connection(state)
    }

    private static func translate(_ reply: amqp_rpc_reply_t, context: String) -> (AMQPError, Teardown) {
        switch reply.reply_type {
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return (libraryError(reply.library_error, context: context), .broken)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if let decoded = reply.reply.decoded {
                switch reply.reply.id {
                case crabbitmq_channel_close_method:
                    let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                    return (channelClosed(close.reply_code, close.reply_text.string, context), .channelClosedByServer)
                case crabbitmq_connection_close_method:
                    let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                    return (
                        connectionClosed(close.reply_code, close.reply_text.string, context), .connectionClosedByServer
                    )
                default:
                    break
                }
            }
            let error = AMQPError(
                kind: .protocolError, message: "\(context): unexpected method \(reply.reply.id) from the broker",
                isRetryable: true)
            return (error, .broken)
        default:
            let error = AMQPError(
                kind: .protocolError, message: "\(context): no reply from rabbitmq-c", isRetryable: true)
            return (error, .broken)
        }
    }

    private static func channelClosed(_ code: UInt16, _ text: String, _ context: String) -> AMQPError {
        // Channel errors are about what was asked (a missing queue, a mismatched declare): retrying the
        // same request will not help.
        AMQPError(kind: .channelClosed, message: "\(context): \(text)", replyCode: Int(code), isRetryable: false)
    }

    private static func connectionClosed(_ code: UInt16, _ text: String, _ context: String) -> AMQPError {
        // 403 ACCESS_REFUSED and 530 NOT_ALLOWED are about credentials and permissions; anything else
        // (320 CONNECTION_FORCED, 541 INTERNAL_ERROR, ...) may well pass on a new connection.
        AMQPError(
            kind: .connectionClosed, message: "\(context): \(text)", replyCode: Int(code),
            isRetryable: code != 403 && code != 530)
    }

    private static func libraryError(_ status: Int32, context: String) -> AMQPError {
        let kind: AMQPError.Kind = status == AMQP_STATUS_TIMEOUT.rawValue ? .timeout : .connectionClosed
        var text = libraryErrorText(status)
        if status == AMQP_STATUS_SOCKET_ERROR.rawValue, errno != 0 {
            // rabbitmq-c's words alone ("a socket error occurred") do not say which.
            text += " (\(String(cString: strerror(errno))))"
        }
        return AMQPError(kind: kind, message: "\(context): \(text)", isRetryable: true)
    }

    /// One call into rabbitmq-c that waits at most `timeout` (which is also when it sends a due heartbeat
    /// and notices a missed one): a delivery via `amqp_consume_message`, else whatever frame came instead.
    private func readOne(_ state: amqp_connection_state_t, timeout: Duration) throws(AMQPError) -> Read {
        amqp_maybe_release_buffers(state)
        var wait = timeout.timeval
        if wait.tv_sec == 0 && wait.tv_usec == 0 {
            // A zero timeval makes rabbitmq-c skip the missed-heartbeat check; a microsecond does not.
            wait.tv_usec = 1
        }
        if let maxBodySize { return try readBounded(state, wait: wait, limit: maxBodySize) }
        var envelope = amqp_envelope_t()
        let reply = amqp_consume_message(state, &envelope, &wait, 0)
        lastLibraryRead = clock.now
        if reply.reply_type == AMQP_RESPONSE_NORMAL {
            defer { amqp_destroy_envelope(&envelope) }
            let message = AMQPMessage(
                deliveryTag: envelope.delivery_tag, exchange: envelope.exchange.string,
                routingKey: envelope.routing_key.string, redelivered: envelope.redelivered != 0,
                consumerTag: envelope.consumer_tag.string,
                properties: AMQPProperties(copying: envelope.message.properties),
                body: envelope.message.body.array)
            return .event(.delivery(message))
        }
        if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION {
            if reply.library_error == AMQP_STATUS_TIMEOUT.rawValue { return .timedOut }
            if reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue {
                // Not a delivery: rabbitmq-c put the frame back; take it and see what it is.
                var frame = amqp_frame_t()
                let status = amqp_simple_wait_frame(state, &frame)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw fail(Self.libraryError(status, context: "reading a frame"), state: state, .broken)
                }
                return try handle(frame, state: state)
            }
        }
        try check(reply, "reading from the broker")
        return .nothing
    }

    /// `amqp_consume_message` frame by frame (a basic.deliver, its content header, its body frames), with a
    /// limit on what is kept: a body over `limit` is read and dropped, one frame at a time (`maxBodySize`).
    private func readBounded(_ state: amqp_connection_state_t, wait: timeval, limit: Int) throws(AMQPError) -> Read {
        var wait = wait
        var frame = amqp_frame_t()
        let status = amqp_simple_wait_frame_noblock(state, &frame, &wait)
        lastLibraryRead = clock.now
        if status == AMQP_STATUS_TIMEOUT.rawValue { return .timedOut }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw fail(Self.libraryError(status, context: "reading a frame"), state: state, .broken)
        }
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD), frame.payload.method.id == crabbitmq_basic_deliver_method,
            let decoded = frame.payload.method.decoded
        else {
            return try handle(frame, state: state)
        }
        // Copied before the next frames are read: they may reuse the memory the method was decoded into.
        let deliver = decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
        let channel = frame.channel
        let deliveryTag = deliver.delivery_tag
        let exchange = deliver.exchange.string
        let routingKey = deliver.routing_key.string
        let redelivered = deliver.redelivered != 0
        let consumerTag = deliver.consumer_tag.string

        // The content frames follow at once on the same channel (the only one this connection opens; rabbitmq-c
        // answers heartbeats inside the wait). Anything else there is the broker closing something.
        let header = try contentFrame(state, channel: channel, context: "reading a content header")
        guard header.frame_type == UInt8(AMQP_FRAME_HEADER), let decodedProperties = header.payload.properties.decoded
        else {
            throw fail(protocolError("a delivery without its content header"), state: state, .broken)
        }
        let properties = AMQPProperties(
            copying: decodedProperties.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
        let size = header.payload.properties.body_size
        let dropped = size > UInt64(max(limit, 0))
        var body: [UInt8] = []
        if !dropped { body.reserveCapacity(Int(size)) }
        var received: UInt64 = 0
        while received < size {
            let part = try contentFrame(state, channel: channel, context: "reading a message body")
            guard part.frame_type == UInt8(AMQP_FRAME_BODY) else {
                throw fail(protocolError("a message body cut short by another frame"), state: state, .broken)
            }
            let fragment = part.payload.body_fragment
            received += UInt64(fragment.len)
            if !dropped, let bytes = fragment.bytes, fragment.len > 0 {
                body.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: fragment.len))
            }
            // rabbitmq-c reads every frame into the channel's pool, and recycling keeps the pool's pages: without
            // this, the pool would grow to the largest message ever read (and keep it for the connection's life,
            // which is how a 100 MiB request used to stay in the core for good). With it, one frame's page.
            amqp_maybe_release_buffers_on_channel(state, channel)
        }
        lastLibraryRead = clock.now
        if dropped {
            logger.debug(
                "AMQP delivery body over the limit; dropped unread",
                metadata: ["amqp.body_size": "\(size)", "amqp.limit": "\(limit)"])
        }
        return .event(
            .delivery(
                AMQPMessage(
                    deliveryTag: deliveryTag, exchange: exchange, routingKey: routingKey, redelivered: redelivered,
                    consumerTag: consumerTag, properties: properties, body: body,
                    bodySize: Int(clamping: size), bodyDropped: dropped)))
    }

    /// The next frame of a delivery's content. A method frame instead (a channel or connection close) is handled,
    /// which throws for a close; any other is a protocol error.
    private func contentFrame(
        _ state: amqp_connection_state_t, channel: amqp_channel_t, context: String
    ) throws(AMQPError) -> amqp_frame_t {
        var frame = amqp_frame_t()
        let status = amqp_simple_wait_frame(state, &frame)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw fail(Self.libraryError(status, context: context), state: state, .broken)
        }
        if frame.frame_type == UInt8(AMQP_FRAME_METHOD) {
            _ = try handle(frame, state: state)
            throw fail(protocolError("\(context): a method frame inside a message"), state: state, .broken)
        }
        guard frame.channel == channel else {
            throw fail(protocolError("\(context): a frame of channel \(frame.channel)"), state: state, .broken)
        }
        return frame
    }

    private func handle(_ frame: amqp_frame_t, state: amqp_connection_state_t) throws(AMQPError) -> Read {
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD), let decoded = frame.payload.method.decoded else {
            logger.debug("AMQP ignoring a frame", metadata: ["amqp.frame_type": "\(frame.frame_type)"])
            return .nothing
        }
        switch frame.payload.method.id {
        case crabbitmq_basic_ack_method:
            let ack = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .event(.ack(deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0))
        case crabbitmq_basic_nack_method:
            let nack = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .event(.nack(deliveryTag: nack.delivery_tag, multiple: nack.multiple != 0))
        case crabbitmq_basic_return_method:
            // Copy the method's fields before reading the content frames that follow it.
            let method = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let replyCode = Int(method.reply_code)
            let replyText = method.reply_text.string
            let exchange = method.exchange.string
            let routingKey = method.routing_key.string
            var message = amqp_message_t()
            let read = amqp_read_message(state, frame.channel, &message, 0)
            try check(read, "reading a returned message")
            defer { amqp_destroy_message(&message) }
            let returned = AMQPReturnedMessage(
                replyCode: replyCode, replyText: replyText, exchange: exchange, routingKey: routingKey,
                properties: AMQPProperties(copying: message.properties), body: message.body.array)
            logger.debug(
                "AMQP message returned",
                metadata: [
                    "amqp.reply_code": "\(replyCode)", "amqp.exchange": "\(exchange)",
                    "amqp.routing_key": "\(routingKey)",
                ])
            return .event(.returned(returned))
        case crabbitmq_channel_close_method:
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            throw fail(
                Self.channelClosed(close.reply_code, close.reply_text.string, "channel closed by the broker"),
                state: state, .channelClosedByServer)
        case crabbitmq_connection_close_method:
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            throw fail(
                Self.connectionClosed(close.reply_code, close.reply_text.string, "connection closed by the broker"),
                state: state, .connectionClosedByServer)
        case crabbitmq_basic_cancel_method:
            let cancel = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            logger.info(
                "AMQP consumer cancelled by the broker",
                metadata: ["amqp.consumer_tag": "\(cancel.consumer_tag.string)"])
            return .nothing
        case crabbitmq_connection_blocked_method:
            logger.info("AMQP connection blocked by the broker")
            return .nothing
        case crabbitmq_connection_unblocked_method:
            logger.info("AMQP connection unblocked by the broker")
            return .nothing
        default:
            logger.debug("AMQP ignoring a method", metadata: ["amqp.method": "\(frame.payload.method.id)"])
            return .nothing
        }
    }
}
