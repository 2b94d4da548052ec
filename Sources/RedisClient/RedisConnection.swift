internal import CHiredis
public import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The owner of one hiredis connection. Blocking: use it from one thread at a time (a worker's own
/// thread), never from Swift's cooperative pool.
///
/// Failures: a timeout, an I/O error or the server closing the connection drops the hiredis context
/// (hiredis contexts are unusable after any of these). The next call then reconnects once (new context,
/// AUTH and SELECT again) before it sends anything; if that fails it throws `.connectionFailed`. A command
/// is never re-sent by this class: a command whose reply was lost fails with `.connectionLost` or
/// `.timeout`, since it may have run.
///
/// hiredis writes with `write(2)`: a process using it must ignore SIGPIPE (the service's `main` does), or a
/// write to a connection the server just reset kills it.
public final class RedisConnection {
    public let configuration: RedisConfiguration
    public let commandTimeout: Duration
    public let connectTimeout: Duration
    private let logger: Logger
    /// nil while broken (after a failure, before the reconnect) and after `close()`.
    private var context: UnsafeMutablePointer<redisContext>?
    private var closed = false

    /// Connects to `redis://[[user]:password@]host[:port][/db]`; AUTH if a password is given, SELECT if a
    /// database is. `commandTimeout` bounds the connect and each reply.
    public convenience init(url: String, commandTimeout: Duration = .seconds(1), logger: Logger) throws(RedisError) {
        let configuration = try RedisConfiguration(url: url)
        try self.init(configuration: configuration, commandTimeout: commandTimeout, logger: logger)
    }

    /// `connectTimeout` bounds the TCP connect and the handshake (AUTH/SELECT/PING); it defaults to the
    /// command timeout.
    public init(
        configuration: RedisConfiguration, commandTimeout: Duration = .seconds(1),
        connectTimeout: Duration? = nil, logger: Logger
    ) throws(RedisError) {
        self.configuration = configuration
        self.commandTimeout = commandTimeout
        self.connectTimeout = connectTimeout ?? commandTimeout
        var logger = logger
        let sentinels = configuration.sentinels.map(\.description).joined(separator: ",")
        logger[metadataKey: "redis.server"] =
            sentinels.isEmpty
            ? "\(configuration.host):\(configuration.port)"
            : "master \(configuration.masterName ?? "") via Sentinels \(sentinels)"
        if configuration.database != 0 { logger[metadataKey: "redis.db"] = "\(configuration.database)" }
        self.logger = logger
        self.context = try Self.connect(
            configuration, connectTimeout: self.connectTimeout, commandTimeout: commandTimeout)
        logger.debug("connected to redis")
    }

    deinit {
        if let context { redisFree(context) }
    }

    /// True while the connection is believed usable: not closed, not broken by an earlier failure, and the
    /// server has not closed the socket (checked without blocking). Does not reconnect.
    public var isConnected: Bool {
        guard let context else { return false }
        if Self.socketIsAlive(context.pointee.fd) { return true }
        drop(reason: "the server closed the connection")
        return false
    }

    /// Frees the hiredis context. Idempotent; later calls throw `.connectionLost` without reconnecting.
    public func close() {
        closed = true
        if let context {
            redisFree(context)
            self.context = nil
        }
    }

    /// Sends one command (binary-safe: each argument goes with its length) and returns its reply.
    /// An error reply, also one nested in an array, throws `.server` with Redis's message.
    @discardableResult
    public func command(_ arguments: [String]) throws(RedisError) -> RedisValue {
        guard !arguments.isEmpty else { throw RedisError(kind: .protocolError, message: "empty command") }
        let context = try usableContext()
        let reply = Self.withArgv(arguments) { argc, argv, lengths in
            redisCommandArgv(context, argc, argv, lengths)
        }
        guard let reply else { throw failure(of: context) }
        defer { freeReplyObject(reply) }
        let result = Self.value(of: reply.assumingMemoryBound(to: redisReply.self))
        if case .failure(let error) = result, error.serverCode == "READONLY" {
            // A master demoted by a failover: the next call reconnects, through the Sentinels if there are any.
            drop(reason: error.message)
        }
        return try result.get()
    }

    /// Sends all commands in one write, then reads one reply per command. Error replies are per command
    /// (`.failure`); a connection failure or timeout throws for the whole pipeline.
    public func pipeline(_ commands: [[String]]) throws(RedisError) -> [Result<RedisValue, RedisError>] {
        guard !commands.isEmpty else { return [] }
        guard !commands.contains(where: \.isEmpty) else {
            throw RedisError(kind: .protocolError, message: "empty command in pipeline")
        }
        let context = try usableContext()
        for arguments in commands {
            let status = Self.withArgv(arguments) { argc, argv, lengths in
                redisAppendCommandArgv(context, argc, argv, lengths)
            }
            guard status == REDIS_OK else { throw failure(of: context) }
        }
        var results: [Result<RedisValue, RedisError>] = []
        results.reserveCapacity(commands.count)
        for _ in commands {
            var reply: UnsafeMutableRawPointer?
            guard redisGetReply(context, &reply) == REDIS_OK, let reply else { throw failure(of: context) }
            results.append(Self.value(of: reply.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(reply)
        }
        return results
    }

    /// EVALSHA, falling back to EVAL once on NOSCRIPT (which also loads the script for next time).
    /// Lua errors throw `.server` with Redis's message.
    public func run(_ script: RedisScript, keys: [String], arguments: [String]) throws(RedisError) -> RedisValue {
        let tail = [String(keys.count)] + keys + arguments
        do throws(RedisError) {
            return try command(["EVALSHA", script.sha1] + tail)
        } catch where error.serverCode == "NOSCRIPT" {
            logger.debug(
                "script not cached on the server, sending its source", metadata: ["redis.script": "\(script.sha1)"])
            return try command(["EVAL", script.source] + tail)
        }
    }

    // MARK: Connection state

    private func usableContext() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        if closed { throw RedisError(kind: .connectionLost, message: "the connection was closed", isRetryable: false) }
        if let context {
            // A server that restarted or dropped us since the last call left an EOF on the socket: reconnect
            // now, before sending, rather than lose this command to the dead connection.
            if Self.socketIsAlive(context.pointee.fd) { return context }
            drop(reason: "the server closed the connection")
        }
        do throws(RedisError) {
            let context = try Self.connect(
                configuration, connectTimeout: connectTimeout, commandTimeout: commandTimeout)
            self.context = context
            logger.info("reconnected to redis")
            return context
        } catch {
            logger.warning("reconnecting to redis failed", metadata: ["error": "\(error.message)"])
            throw error
        }
    }

    /// Turns a failed hiredis call into an error and drops the context, which hiredis leaves unusable.
    private func failure(of context: UnsafeMutablePointer<redisContext>) -> RedisError {
        let savedErrno = errno
        let code = context.pointee.err
        let text = Self.errorText(context)
        let error: RedisError
        switch code {
        case REDIS_ERR_IO
        where savedErrno == EAGAIN || savedErrno == EWOULDBLOCK
            || text == String(cString: strerror(EAGAIN)):
            error = RedisError(kind: .timeout, message: "no reply within \(commandTimeout)")
        case REDIS_ERR_PROTOCOL, REDIS_ERR_OOM:
            error = RedisError(kind: .protocolError, message: text)
        default:
            error = RedisError(kind: .connectionLost, message: text.isEmpty ? "connection lost" : text)
        }
        drop(reason: error.message)
        return error
    }

    private func drop(reason: String) {
        guard let context else { return }
        logger.warning("redis connection dropped; the next call reconnects", metadata: ["error": "\(reason)"])
        redisFree(context)
        self.context = nil
    }

    // MARK: hiredis

    /// `open`, to the master the Sentinels name when there are Sentinels (decision 0026): each is asked in
    /// turn (`SENTINEL get-master-addr-by-name`) until one names a master that says it is one (`ROLE`: a
    /// Sentinel that has not yet seen a failover may name the old master, now a replica).
    private static func connect(
        _ configuration: RedisConfiguration, connectTimeout: Duration,
        commandTimeout: Duration
    ) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let masterName = configuration.masterName, !configuration.sentinels.isEmpty else {
            return try open(configuration, connectTimeout: connectTimeout, commandTimeout: commandTimeout)
        }
        var problems: [String] = []
        for sentinel in configuration.sentinels {
            let master: RedisEndpoint
            do throws(RedisError) {
                master = try askSentinel(sentinel, masterName: masterName, timeout: connectTimeout)
            } catch {
                problems.append("Sentinel \(sentinel): \(error.message)")
                continue
            }
            var target = configuration
            target.host = master.host
            target.port = master.port
            do throws(RedisError) {
                let context = try open(target, connectTimeout: connectTimeout, commandTimeout: commandTimeout)
                let role = withArgv(["ROLE"]) { argc, argv, lengths in redisCommandArgv(context, argc, argv, lengths) }
                var isMaster = false
                if let role {
                    if case .success(.array(let items)) = value(of: role.assumingMemoryBound(to: redisReply.self)) {
                        isMaster = items.first?.stringValue == "master"
                    }
                    freeReplyObject(role)
                }
                if isMaster { return context }
                redisFree(context)
                problems.append("\(master), named by Sentinel \(sentinel), is not a master (yet)")
            } catch {
                if !error.isRetryable { throw error }  // a wrong password: no other master would take it
                problems.append("master \(master) from Sentinel \(sentinel): \(error.message)")
            }
        }
        throw RedisError(
            kind: .connectionFailed,
            message: "no master '\(masterName)' found through the Sentinels: " + problems.joined(separator: "; "))
    }

    /// One Sentinel's answer to `SENTINEL get-master-addr-by-name`.
    private static func askSentinel(
        _ sentinel: RedisEndpoint, masterName: String, timeout: Duration
    ) throws(RedisError) -> RedisEndpoint {
        let context = try open(
            RedisConfiguration(host: sentinel.host, port: sentinel.port), connectTimeout: timeout,
            commandTimeout: timeout)
        defer { redisFree(context) }
        let arguments = ["SENTINEL", "get-master-addr-by-name", masterName]
        guard let reply = withArgv(arguments, { argc, argv, lengths in redisCommandArgv(context, argc, argv, lengths) })
        else {
            throw RedisError(kind: .connectionFailed, message: "no answer: \(errorText(context))")
        }
        defer { freeReplyObject(reply) }
        switch value(of: reply.assumingMemoryBound(to: redisReply.self)) {
        case .success(.array(let items)):
            guard items.count == 2, let host = items[0].stringValue, let port = items[1].intValue else {
                throw RedisError(kind: .protocolError, message: "an unexpected answer to get-master-addr-by-name")
            }
            return RedisEndpoint(host: host, port: port)
        case .success:
            throw RedisError(kind: .connectionFailed, message: "it knows no master named '\(masterName)'")
        case .failure(let error):
            throw RedisError(kind: .connectionFailed, message: error.message)
        }
    }

    private static func open(
        _ configuration: RedisConfiguration, connectTimeout: Duration,
        commandTimeout: Duration
    ) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard
            let context = redisConnectWithTimeout(
                configuration.host, Int32(configuration.port),
                timeValue(connectTimeout))
        else {
            throw RedisError(kind: .connectionFailed, message: "cannot allocate a hiredis context")
        }
        var handedOver = false
        defer { if !handedOver { redisFree(context) } }
        let target = "\(configuration.host):\(configuration.port)"
        guard context.pointee.err == 0 else {
            throw RedisError(kind: .connectionFailed, message: "cannot connect to \(target): \(errorText(context))")
        }
        guard redisSetTimeout(context, timeValue(connectTimeout)) == REDIS_OK else {
            throw RedisError(kind: .connectionFailed, message: "cannot set a timeout: \(errorText(context))")
        }

        var handshake: [[String]] = []
        if let password = configuration.password {
            handshake.append(["AUTH"] + (configuration.user.map { [$0] } ?? []) + [password])
        }
        if configuration.database != 0 { handshake.append(["SELECT", String(configuration.database)]) }
        if handshake.isEmpty { handshake.append(["PING"]) }  // a paused or protected server shows here, not later
        for arguments in handshake {
            let reply = withArgv(arguments) { argc, argv, lengths in redisCommandArgv(context, argc, argv, lengths) }
            guard let reply else {
                let reason =
                    errno == EAGAIN || errno == EWOULDBLOCK ? "no reply within \(connectTimeout)" : errorText(context)
                throw RedisError(
                    kind: .connectionFailed, message: "\(target) did not answer \(arguments[0]): \(reason)")
            }
            defer { freeReplyObject(reply) }
            if case .failure(let error) = value(of: reply.assumingMemoryBound(to: redisReply.self)) {
                // Wrong password, unknown user, NOAUTH, database out of range: retrying will not help.
                throw RedisError(
                    kind: .connectionFailed, message: "\(arguments[0]) failed: \(error.message)",
                    isRetryable: error.isRetryable)
            }
        }

        guard redisSetTimeout(context, timeValue(commandTimeout)) == REDIS_OK else {
            throw RedisError(kind: .connectionFailed, message: "cannot set a timeout: \(errorText(context))")
        }
        handedOver = true
        return context
    }

    /// Calls `body` with argc, argv and argument lengths pointing into one buffer owned for the call.
    private static func withArgv<R>(
        _ arguments: [String],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
    ) -> R {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(arguments.reduce(1) { $0 + $1.utf8.count })
        var offsets: [Int] = []
        var lengths: [Int] = []
        offsets.reserveCapacity(arguments.count)
        lengths.reserveCapacity(arguments.count)
        for argument in arguments {
            offsets.append(bytes.count)
            bytes.append(contentsOf: argument.utf8)
            lengths.append(bytes.count - offsets[offsets.count - 1])
        }
        bytes.append(0)  // never an empty buffer, so there is always a base address
        return bytes.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    body(Int32(arguments.count), argvBuffer.baseAddress!, lengthBuffer.baseAddress!)
                }
            }
        }
    }

    private static func value(of reply: UnsafePointer<redisReply>) -> Result<RedisValue, RedisError> {
        let reply = reply.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .success(.string(text(reply)))
        case REDIS_REPLY_STATUS:
            return .success(.status(text(reply)))
        case REDIS_REPLY_INTEGER:
            return .success(.integer(Int(reply.integer)))
        case REDIS_REPLY_NIL:
            return .success(.null)
        case REDIS_REPLY_ERROR:
            return .failure(RedisError(kind: .server, message: text(reply)))
        case REDIS_REPLY_ARRAY:
            var elements: [RedisValue] = []
            elements.reserveCapacity(reply.elements)
            for index in 0..<reply.elements {
                guard let element = reply.element[index] else {
                    elements.append(.null)
                    continue
                }
                switch value(of: element) {
                case .success(let value): elements.append(value)
                case .failure(let error): return .failure(error)
                }
            }
            return .success(.array(elements))
        default:
            return .failure(RedisError(kind: .protocolError, message: "unknown reply type \(reply.type)"))
        }
    }

    private static func text(_ reply: redisReply) -> String {
        guard let str = reply.str, reply.len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: str, count: reply.len), as: UTF8.self)
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
    }

    /// Whether the socket is still open, without blocking. Between commands nothing is due from the server,
    /// so anything readable means EOF, an error, or a stream out of step: all reasons to start afresh.
    private static func socketIsAlive(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, 0)
        if ready == 0 { return true }
        if ready < 0 { return errno == EINTR }
        return false
    }

    private static func timeValue(_ duration: Duration) -> timeval {
        let (seconds, attoseconds) = duration.components
        var microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        microseconds = max(microseconds, 1_000)  // zero would mean "no timeout" to SO_RCVTIMEO
        return timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int(microseconds % 1_000_000))
    }
}

/// One thread at a time: the hiredis context must not be shared.
@available(*, unavailable)
extension RedisConnection: Sendable {}
