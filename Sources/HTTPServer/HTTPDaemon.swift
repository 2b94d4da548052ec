internal import CMicroHTTPD
import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A libmicrohttpd daemon: polling threads (`poll`, not epoll: resumed connections stall under epoll),
/// every request suspended while its handler's answer is outstanding.
///
/// Call `shutdown(timeout:)` before letting go of it; `deinit` falls back to `shutdown(timeout: .zero)`.
// @unchecked Sendable: `daemon` and `port` never change after init; `lifecycle` serializes shutdown.
public final class HTTPDaemon: @unchecked Sendable {
    private let core: DaemonCore
    private let daemon: OpaquePointer
    /// true once the daemon was stopped. Held for the whole of `shutdown`, so concurrent calls wait.
    private let lifecycle = Locked(false)

    /// The bound port (configuration.port 0 picks a free one).
    public let port: Int

    /// How long `shutdown` lets responses leave after its deadline passed (the 503s it sent then).
    static let sendGrace: Duration = .seconds(1)

    /// The handler runs on a daemon thread; it must not block. It may respond before returning or later.
    public init(
        configuration: HTTPServerConfiguration,
        logger: Logger,
        handler: @escaping @Sendable (HTTPRequest, HTTPResponder) -> Void
    ) throws(HTTPServerError) {
        try Self.validate(configuration)
        guard let address = BindAddress(configuration.bindAddress, port: UInt16(configuration.port)) else {
            throw HTTPServerError(
                kind: .invalidConfiguration,
                message: "bind address \"\(configuration.bindAddress)\" is not an IPv4 or IPv6 address",
                isRetryable: false
            )
        }
        let core = DaemonCore(configuration: configuration, logger: logger, handler: handler)

        var flags =
            MHD_USE_POLL_INTERNAL_THREAD.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue
            | MHD_USE_ERROR_LOG.rawValue
        if address.isIPv6 {
            flags |= MHD_USE_IPv6.rawValue
        }
        let accessHandler: MHD_AccessHandlerCallback = { cls, connection, url, method, version, data, size, slot in
            guard let cls, let connection, let size, let slot else { return .NO }
            return Unmanaged<DaemonCore>.fromOpaque(cls).takeUnretainedValue()
                .access(
                    connection: connection,
                    url: url,
                    method: method,
                    version: version,
                    data: data,
                    size: size,
                    slot: slot
                )
        }
        let completed: MHD_RequestCompletedCallback = { cls, connection, slot, termination in
            guard let cls, let slot else { return }
            Unmanaged<DaemonCore>.fromOpaque(cls).takeUnretainedValue()
                .completed(connection: connection, slot: slot, termination: termination)
        }
        let notify: MHD_NotifyConnectionCallback = { cls, connection, socketContext, code in
            guard let cls, let connection, let socketContext else { return }
            let core = Unmanaged<DaemonCore>.fromOpaque(cls).takeUnretainedValue()
            if code == .CONNECTION_NOTIFY_STARTED {
                socketContext.pointee = Unmanaged.passRetained(core.edge.started(connection: connection)).toOpaque()
            } else if let raw = socketContext.pointee {
                socketContext.pointee = nil
                core.edge.closed(Unmanaged<ConnectionRecord>.fromOpaque(raw).takeRetainedValue())
            }
        }
        let uriLog: cmhd_uri_log_fn = { cls, uri, _ in
            guard let cls else { return nil }
            return Unmanaged<DaemonCore>.fromOpaque(cls).takeUnretainedValue().requestStarted(rawTarget: uri)
        }
        // libmicrohttpd keeps this reference until MHD_stop_daemon; `shutdown` releases it.
        let coreReference = Unmanaged.passRetained(core).toOpaque()
        errno = 0
        let started = address.withSocketAddress { socketAddress in
            var options = cmhd_daemon_options()
            options.flags = flags
            options.bind_address = socketAddress
            options.thread_pool_size = UInt32(configuration.threads)
            options.connection_limit = UInt32(configuration.connectionLimit)
            options.connection_timeout_seconds = UInt32(configuration.connectionTimeout.components.seconds)
            options.connection_memory_limit = configuration.connectionMemoryLimit
            options.access_handler = accessHandler
            options.access_handler_cls = coreReference
            options.completed = completed
            options.completed_cls = coreReference
            options.uri_log = uriLog
            options.uri_log_cls = coreReference
            options.notify_connection = notify
            options.notify_connection_cls = coreReference
            options.listen_backlog = UInt32(configuration.listenBacklog)
            options.log_sink = UnsafePointer(core.logSink)
            return cmhd_start_daemon(&options)
        }
        let startErrno = errno
        let startupLog = core.endStartup()
        guard let started else {
            Unmanaged<DaemonCore>.fromOpaque(coreReference).release()
            throw HTTPServerError(
                kind: .startFailed,
                message: "cannot listen on \(configuration.bindAddress) port \(configuration.port)"
                    + (startupLog.isEmpty ? "" : ": " + startupLog.joined(separator: "; ")),
                errno: startErrno == 0 ? nil : startErrno,
                isRetryable: true
            )
        }
        self.core = core
        self.daemon = started
        self.port = Int(cmhd_bound_port(started))
        core.edge.start()
        logger.info(
            "HTTP server listening",
            metadata: [
                "http.address": "\(configuration.bindAddress)", "http.port": "\(port)",
                "http.threads": "\(configuration.threads)",
            ]
        )
    }

    deinit {
        shutdown(timeout: .zero)
    }

    /// Requests received and not answered yet.
    public var inFlight: Int {
        core.inFlight
    }

    /// Open connections, buffered body bytes, connections refused or timed out so far.
    public var statistics: HTTPServerStatistics {
        let counters = core.edge.counters
        return HTTPServerStatistics(
            openConnections: counters.open,
            bufferedBodyBytes: core.bufferedBodyBytes.load(ordering: .relaxed),
            refusedPerAddress: counters.refusedPerAddress,
            refusedOverloaded: counters.refusedOverloaded,
            timedOut: counters.timedOut
        )
    }

    /// `shutdown` has begun: no new connections are accepted and responses carry `Connection: close`
    /// (a readiness check can report not ready).
    public var isDraining: Bool {
        core.isDraining
    }

    /// Stops accepting, waits (up to `timeout`) until every request was answered and its response sent,
    /// then stops the daemon. Requests still unanswered at the deadline get
    /// `configuration.shutdownResponse` (503), with up to `sendGrace` to leave. Responses sent while
    /// shutting down carry `Connection: close`. Never calls MHD_stop_daemon while a connection is
    /// suspended. Idempotent; a concurrent call waits for the first. Must not be called from a handler.
    public func shutdown(timeout: Duration) {
        lifecycle.withLock { stopped in
            guard !stopped else { return }
            let deadline = ContinuousClock.now + max(timeout, .zero)
            core.beginDraining()
            // The listening socket: ours to close, but only after MHD_stop_daemon.
            let listenSocket = MHD_quiesce_daemon(daemon)
            if !core.waitUntilDrained(deadline: deadline) {
                let answered = core.answerUnanswered()
                core.logger.info(
                    "HTTP server answered requests still open at the shutdown deadline",
                    metadata: ["http.answered": "\(answered)"]
                )
                // Give those answers (and any still being sent) a moment to leave; a client that does
                // not read is cut off.
                if !core.waitUntilDrained(deadline: .now + Self.sendGrace) {
                    // Safety needs only this: nothing suspended. What is left is a resume in progress on
                    // another thread, which takes moments.
                    _ = core.waitUntilDrained(untilSent: false, deadline: nil)
                }
            }
            core.edge.stop()
            MHD_stop_daemon(daemon)
            if listenSocket >= 0 {
                close(listenSocket)
            }
            Unmanaged.passUnretained(core).release()
            stopped = true
            core.logger.info("HTTP server stopped", metadata: ["http.port": "\(port)"])
        }
    }

    private static func validate(_ configuration: HTTPServerConfiguration) throws(HTTPServerError) {
        func invalid(_ message: String) -> HTTPServerError {
            HTTPServerError(kind: .invalidConfiguration, message: message, isRetryable: false)
        }
        guard (0...65_535).contains(configuration.port) else {
            throw invalid("port \(configuration.port) is not in 0...65535")
        }
        guard configuration.maxBodyBytes >= 0 else {
            throw invalid("maxBodyBytes \(configuration.maxBodyBytes) is negative")
        }
        guard (1...1_024).contains(configuration.threads) else {
            throw invalid("threads \(configuration.threads) is not in 1...1024")
        }
        guard (1...1_000_000).contains(configuration.connectionLimit) else {
            throw invalid("connectionLimit \(configuration.connectionLimit) is not in 1...1000000")
        }
        guard configuration.maxTargetBytes >= 1, configuration.maxHeaderBytes >= configuration.maxTargetBytes else {
            throw invalid("maxTargetBytes must be positive and at most maxHeaderBytes")
        }
        guard configuration.connectionMemoryLimit >= 4_096 else {
            throw invalid("connectionMemoryLimit \(configuration.connectionMemoryLimit) is under 4096 bytes")
        }
        if let maxConnections = configuration.maxConnections, maxConnections >= configuration.connectionLimit {
            throw invalid(
                "maxConnections \(maxConnections) must be under connectionLimit \(configuration.connectionLimit)"
            )
        }
        guard (0...86_400).contains(configuration.connectionTimeout.components.seconds) else {
            throw invalid("connectionTimeout \(configuration.connectionTimeout) is not in 0...86400 seconds")
        }
    }
}

/// An MHD connection pointer that crosses threads. Only `MHD_resume_connection` is called with it off
/// the daemon's threads, and only while the connection is suspended (see `DaemonCore.respond`).
struct ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Per-request state while libmicrohttpd calls the access handler; lives in `*con_cls`, released in the
/// request-completed callback. Only the connection's daemon thread touches it.
final class RequestContext {
    /// The target as sent (libmicrohttpd's URI log callback sees it before percent-decoding).
    var rawTarget: [UInt8] = []
    /// Where libmicrohttpd kept the raw target, for finding a raw NUL byte in it (see `checkHead`).
    var rawTargetAddress: UInt = 0
    var rawTargetLength = 0
    /// Why the request is refused before the handler sees it; checked on the first access call.
    var rejection: HTTPRejection?
    /// The first access call (the head complete) has been made.
    var headSeen = false
    var body: [UInt8] = []
    var bodyTooLarge = false
    var discardedBytes = 0
    /// The handler has been called (or the request refused); later calls only deliver the answer.
    var dispatched = false
    var requestID: UInt64?
}

/// What the daemon threads and the responders share, behind one lock.
struct SharedState {
    enum Phase {
        /// The handler is running on the daemon thread; the connection is not suspended.
        case handling
        /// The handler returned without answering; the connection is suspended.
        case suspended
        /// Answered; the daemon thread queues the response on its next call for the request.
        case answered(HTTPResponse)
    }

    struct Entry {
        var phase: Phase
        let connection: ConnectionHandle
    }

    /// Requests handed to the handler whose response has not been queued yet.
    var entries: [UInt64: Entry] = [:]
    var lastID: UInt64 = 0
    /// Entries in `.handling` or `.suspended`.
    var inFlight = 0
    /// Requests handed to the handler that libmicrohttpd has not reported completed (response sent, or
    /// the connection gone). A response queued is not yet a response sent: stopping cuts it off.
    var open = 0
    /// Connections we suspended and have not finished resuming (MHD_resume_connection not yet returned).
    var suspended = 0
    /// Shutdown has begun: responses carry `Connection: close`.
    var draining = false
    /// The handler is no longer called (`shutdownResponse` instead), so nothing will be suspended again.
    var closed = false
    /// Library log lines while the daemon starts, for the error if it does not (nil afterwards).
    var startupLog: [String]? = []
}

// @unchecked Sendable: mutable state is in `shared` (behind a lock); `logSink` is written once in init.
final class DaemonCore: @unchecked Sendable {
    let configuration: HTTPServerConfiguration
    let logger: Logger
    let handler: @Sendable (HTTPRequest, HTTPResponder) -> Void
    let shared = Locked(SharedState())
    /// Signalled whenever a count drops while draining; waiters re-check the counts.
    let drainSignal = DispatchSemaphore(value: 0)
    /// A body declared or arriving over `maxBodyBytes` is read and dropped up to this size (so the client
    /// reliably reads the handler's 413); beyond it the request is answered early or the connection closed.
    let discardLimit: Int
    let logSink: UnsafeMutablePointer<cmhd_log_sink>
    /// Connection limits and head / body timeouts.
    let edge: ConnectionEdge
    /// Capacity of the body buffers of requests being read (what arrived, not what was announced).
    let bufferedBodyBytes = Atomic<Int>(0)

    init(
        configuration: HTTPServerConfiguration,
        logger: Logger,
        handler: @escaping @Sendable (HTTPRequest, HTTPResponder) -> Void
    ) {
        self.configuration = configuration
        self.logger = logger
        self.handler = handler
        self.edge = ConnectionEdge(configuration: configuration)
        self.discardLimit = max(configuration.maxBodyBytes.multipliedReportingOverflow(by: 16).partialValue, 1 << 20)
        self.logSink = .allocate(capacity: 1)
        logSink.initialize(
            to: cmhd_log_sink(
                log_line: { context, line in
                    guard let context, let line else { return }
                    Unmanaged<DaemonCore>.fromOpaque(context).takeUnretainedValue()
                        .libraryLogged(String(cString: line))
                },
                context: Unmanaged.passUnretained(self).toOpaque()
            )
        )
    }

    deinit {
        logSink.deinitialize(count: 1)
        logSink.deallocate()
    }

    var inFlight: Int {
        shared.withLock { $0.inFlight }
    }

    var isDraining: Bool {
        shared.withLock { $0.draining }
    }

    // MARK: Library log

    func libraryLogged(_ line: String) {
        let line = line.trimmingSuffix(while: { $0 == "\n" || $0 == "\r" })
        let duringStartup = shared.withLock { state -> Bool in
            guard state.startupLog != nil else { return false }
            state.startupLog?.append(line)
            return true
        }
        if !duringStartup {
            logger.info("libmicrohttpd reported a problem", metadata: ["mhd.message": "\(line)"])
        }
    }

    func endStartup() -> [String] {
        shared.withLock { state in
            defer { state.startupLog = nil }
            return state.startupLog ?? []
        }
    }

    // MARK: Access handler (daemon threads)

    /// The URI log callback: a request line has arrived. Its context lives in `*con_cls` from here on and
    /// is released in the request-completed callback (which libmicrohttpd calls for every request that
    /// got this far, also when the library itself answers it).
    func requestStarted(rawTarget: UnsafePointer<CChar>?) -> UnsafeMutableRawPointer {
        let context = RequestContext()
        if let rawTarget {
            let length = strlen(rawTarget)
            context.rawTargetAddress = UInt(bitPattern: rawTarget)
            context.rawTargetLength = length
            // A target far over the limit is refused whole; only its length matters then.
            if length > configuration.maxTargetBytes {
                context.rejection = HTTPRejection(
                    kind: .targetTooLong,
                    location: .request,
                    message:
                        "The request target is \(length) bytes; at most \(configuration.maxTargetBytes) are accepted"
                )
            } else {
                context.rawTarget = Array(UnsafeRawBufferPointer(start: rawTarget, count: length))
                context.rejection = RequestHygiene.checkTarget(
                    context.rawTarget,
                    maxBytes: configuration.maxTargetBytes
                )
            }
        }
        return Unmanaged.passRetained(context).toOpaque()
    }

    func access(
        connection: OpaquePointer,
        url: UnsafePointer<CChar>?,
        method: UnsafePointer<CChar>?,
        version: UnsafePointer<CChar>?,
        data: UnsafePointer<CChar>?,
        size: UnsafeMutablePointer<Int>,
        slot: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> MHD_Result {
        if slot.pointee == nil {
            // Not expected (the URI log callback made one), but a request never goes unchecked.
            slot.pointee = requestStarted(rawTarget: nil)
        }
        guard let existing = slot.pointee else { return .NO }
        let context = Unmanaged<RequestContext>.fromOpaque(existing).takeUnretainedValue()
        if !context.headSeen {
            // First call: the head is complete, no body byte has been handed over yet.
            context.headSeen = true
            let record = Self.record(connection)
            if let record, record.overloaded {
                edge.answering(record)
                var response = configuration.overloadResponse
                response.headers.removeAll { $0.0.lowercased() == "connection" }
                response.headers.append(("Connection", "close"))
                context.dispatched = true
                return queue(response, on: connection, closing: true)
            }
            if let rejection = context.rejection ?? checkHead(context, connection: connection, version: version) {
                edge.answering(record)
                return reject(context, rejection, connection: connection)
            }
            let declared = Self.contentLength(connection)
            if let declared, declared > configuration.maxBodyBytes {
                context.bodyTooLarge = true
                // With `Expect: 100-continue` the client waits: answering now spares it the upload.
                // A body too big to read and drop is answered now too (libmicrohttpd then closes).
                if Self.expectsContinue(connection) || declared > discardLimit {
                    return dispatch(context, connection: connection, url: url, method: method)
                }
            }
            // No buffer is reserved for the announced length: a client that announces 60 KiB and sends
            // 10 bytes costs what it sent (the buffer grows as bytes arrive).
            if (declared ?? 0) > 0 || Self.isChunked(connection) {
                edge.expectBody(record)
            } else {
                // The head was in time; the handler is called on the next call, for nothing more to read.
                edge.answering(record)
            }
            return .YES
        }
        if context.dispatched {
            return deliverAnswer(context, connection: connection)
        }
        let count = size.pointee
        guard count == 0 else {
            size.pointee = 0
            if !context.bodyTooLarge {
                if context.body.count + count <= configuration.maxBodyBytes, let data {
                    let before = context.body.capacity
                    context.body.append(
                        contentsOf: UnsafeRawBufferPointer(start: UnsafeRawPointer(data), count: count)
                    )
                    bufferedBodyBytes.add(context.body.capacity - before, ordering: .relaxed)
                    return .YES
                }
                context.bodyTooLarge = true
                context.discardedBytes = context.body.count
                releaseBody(context)
            }
            context.discardedBytes += count
            if context.discardedBytes > discardLimit {
                logger.info(
                    "HTTP request body far over the limit: connection closed",
                    metadata: ["http.bytes": "\(context.discardedBytes)"]
                )
                return .NO
            }
            return .YES
        }
        return dispatch(context, connection: connection, url: url, method: method)
    }

    /// The head's checks (`RequestHygiene`), and a raw NUL byte in the target: libmicrohttpd cuts the
    /// target's C string there, but its version string starts right after the target's end in the same
    /// buffer (connection.c, `parse_initial_message_line`), so a gap between the two means bytes were lost.
    private func checkHead(
        _ context: RequestContext,
        connection: OpaquePointer,
        version: UnsafePointer<CChar>?
    ) -> HTTPRejection? {
        let versionText = version.map { String(cString: $0) } ?? ""
        if let version, context.rawTargetAddress != 0 {
            let targetEnd = context.rawTargetAddress &+ UInt(context.rawTargetLength)
            let versionStart = UInt(bitPattern: version)
            // Only where the layout is the one described (the version right after the target); otherwise
            // nothing is concluded.
            if versionStart > targetEnd &+ 1, versionStart - targetEnd < UInt(configuration.connectionMemoryLimit) {
                return HTTPRejection(
                    kind: .controlCharacter,
                    location: .path,
                    message: "The request target contains a NUL byte"
                )
            }
        }
        return RequestHygiene.checkHead(
            version: versionText,
            fields: Self.fields(of: connection),
            targetBytes: context.rawTargetLength,
            maxHeaderBytes: configuration.maxHeaderBytes
        )
    }

    /// Answers a refused request at once with `Connection: close` (libmicrohttpd reads no body after an
    /// early answer and closes), without calling the handler.
    private func reject(_ context: RequestContext, _ rejection: HTTPRejection, connection: OpaquePointer) -> MHD_Result
    {
        context.dispatched = true
        context.body = []  // not counted yet: nothing of a body is read before the head is checked
        logger.debug("HTTP request refused", metadata: ["http.rejection": "\(rejection)"])
        var response = configuration.rejectionResponse(rejection)
        response.headers.removeAll { $0.0.lowercased() == "connection" }
        response.headers.append(("Connection", "close"))
        return queue(response, on: connection, closing: true)
    }

    /// Hands the request to the handler. Ordering, and why it is race-free:
    /// 1. Under the lock the request is registered as `.handling` (counted in flight).
    /// 2. The handler runs (no lock held). `respond` on any thread, before or after the handler returns,
    ///    takes the lock and records the answer: `.handling` → `.answered` needs no resume.
    /// 3. Under the lock again: an answer already recorded is queued right here (no suspension at all);
    ///    otherwise the phase becomes `.suspended` *and* MHD_suspend_connection is called in the same
    ///    critical section. So a `respond` that sees `.suspended` only ever resumes a connection that is
    ///    already suspended, never one still in play, and never twice.
    private func dispatch(
        _ context: RequestContext,
        connection: OpaquePointer,
        url: UnsafePointer<CChar>?,
        method: UnsafePointer<CChar>?
    ) -> MHD_Result {
        context.dispatched = true
        edge.answering(Self.record(connection))
        let request = HTTPRequest(
            method: method.map { String(cString: $0) } ?? "",
            path: url.map { String(cString: $0) } ?? "/",
            query: Self.values(of: connection, kind: .GET_ARGUMENT_KIND, join: false),
            headers: Self.values(of: connection, kind: .HEADER_KIND, join: true),
            body: context.bodyTooLarge ? [] : context.body,
            bodyTooLarge: context.bodyTooLarge,
            peerAddress: Self.peerAddress(connection)
        )
        releaseBody(context)
        let handle = ConnectionHandle(pointer: connection)
        let admitted = shared.withLock { state -> UInt64? in
            guard !state.closed else { return nil }
            state.lastID += 1
            state.entries[state.lastID] = SharedState.Entry(phase: .handling, connection: handle)
            state.inFlight += 1
            state.open += 1
            return state.lastID
        }
        guard let requestID = admitted else {
            return queue(configuration.shutdownResponse, on: connection, closing: true)
        }
        context.requestID = requestID
        handler(request, HTTPResponder(core: self, requestID: requestID, connection: handle))
        let (answer, closing) = shared.withLock { state -> (HTTPResponse?, Bool) in
            switch state.entries[requestID]?.phase {
            case .answered(let response):
                state.entries[requestID] = nil
                return (response, state.draining)
            case .handling:
                state.entries[requestID]?.phase = .suspended
                state.suspended += 1
                MHD_suspend_connection(connection)
                return (nil, false)
            case .suspended, nil:
                return (nil, false)
            }
        }
        guard let answer else { return .YES }
        return queue(answer, on: connection, closing: closing)
    }

    /// A call for a request already handed over: after a resume, the answer is waiting.
    private func deliverAnswer(_ context: RequestContext, connection: OpaquePointer) -> MHD_Result {
        guard let requestID = context.requestID else { return .NO }
        let (answer, closing, pending) = shared.withLock { state -> (HTTPResponse?, Bool, Bool) in
            switch state.entries[requestID]?.phase {
            case .answered(let response):
                state.entries[requestID] = nil
                return (response, state.draining, false)
            case .handling, .suspended:
                return (nil, false, true)
            case nil:
                return (nil, false, false)
            }
        }
        if let answer {
            return queue(answer, on: connection, closing: closing)
        }
        // Not expected: libmicrohttpd does not call for a suspended connection. Closing beats spinning.
        logger.debug("HTTP access handler called without an answer", metadata: ["http.pending": "\(pending)"])
        return pending ? .YES : .NO
    }

    private func queue(_ response: HTTPResponse, on connection: OpaquePointer, closing: Bool) -> MHD_Result {
        var response = response
        if !(100...599).contains(response.status) {
            logger.info(
                "HTTP handler answered an invalid status; sending 500",
                metadata: ["http.status": "\(response.status)"]
            )
            response = HTTPResponse(status: 500)
        }
        let created = response.body.withUnsafeBytes { bytes in
            MHD_create_response_from_buffer(
                bytes.count,
                UnsafeMutableRawPointer(mutating: bytes.baseAddress),
                .RESPMEM_MUST_COPY
            )
        }
        guard let mhdResponse = created else {
            logger.info("libmicrohttpd could not create a response", metadata: ["http.status": "\(response.status)"])
            return .NO
        }
        defer { MHD_destroy_response(mhdResponse) }
        var hasConnectionHeader = false
        for (name, value) in response.headers {
            if name.lowercased() == "connection" {
                hasConnectionHeader = true
            }
            if MHD_add_response_header(mhdResponse, name, value) == .NO {
                logger.debug("libmicrohttpd refused a response header", metadata: ["http.header": "\(name)"])
            }
        }
        if closing && !hasConnectionHeader {
            _ = MHD_add_response_header(mhdResponse, "Connection", "close")
        }
        return MHD_queue_response(connection, UInt32(response.status), mhdResponse)
    }

    // MARK: Responders (any thread)

    /// Records the answer; resumes the connection if the daemon thread already suspended it.
    ///
    /// The connection pointer is valid for the resume: the phase was `.suspended`, so the connection was
    /// suspended in the same critical section that set it, and a suspended connection is neither timed
    /// out nor closed by libmicrohttpd (MHD_stop_daemon waits for `suspended` to reach 0, which happens
    /// only after MHD_resume_connection returned).
    func respond(requestID: UInt64, connection: ConnectionHandle, response: HTTPResponse) {
        let outcome = shared.withLock { state -> (recorded: Bool, resume: Bool) in
            guard let phase = state.entries[requestID]?.phase else { return (false, false) }
            switch phase {
            case .handling:
                state.entries[requestID]?.phase = .answered(response)
                state.inFlight -= 1
                return (true, false)
            case .suspended:
                state.entries[requestID]?.phase = .answered(response)
                state.inFlight -= 1
                return (true, true)
            case .answered:
                return (false, false)
            }
        }
        guard outcome.recorded else {
            logger.debug("answer to a finished request ignored", metadata: ["http.request": "\(requestID)"])
            return
        }
        if outcome.resume {
            MHD_resume_connection(connection.pointer)
            shared.withLock { $0.suspended -= 1 }
        }
        signalIfDraining()
    }

    // MARK: Request completed (daemon threads)

    func completed(
        connection: OpaquePointer?,
        slot: UnsafeMutablePointer<UnsafeMutableRawPointer?>,
        termination: MHD_RequestTerminationCode
    ) {
        if let connection {
            edge.expectHead(Self.record(connection))
        }
        guard let raw = slot.pointee else { return }
        slot.pointee = nil
        let context = Unmanaged<RequestContext>.fromOpaque(raw).takeRetainedValue()
        releaseBody(context)
        guard let requestID = context.requestID else { return }
        let unanswered = shared.withLock { state -> Bool in
            state.open -= 1
            guard let entry = state.entries.removeValue(forKey: requestID) else { return false }
            switch entry.phase {
            case .handling:
                state.inFlight -= 1
                return true
            case .suspended:
                state.inFlight -= 1
                state.suspended -= 1
                return true
            case .answered:
                return false
            }
        }
        if unanswered {
            logger.debug(
                "HTTP request ended before it was answered",
                metadata: ["http.request": "\(requestID)", "mhd.termination": "\(termination.rawValue)"]
            )
        }
        signalIfDraining()
    }

    // MARK: Shutdown

    func beginDraining() {
        shared.withLock { $0.draining = true }
    }

    /// Waits until nothing is suspended and (with `untilSent`) every response was sent, then closes
    /// admission in the same critical section (so no handler runs, and nothing is suspended, after it
    /// returns true). `deadline` nil: no limit.
    func waitUntilDrained(untilSent: Bool = true, deadline: ContinuousClock.Instant?) -> Bool {
        while true {
            let drained = shared.withLock { state -> Bool in
                // Without `untilSent` only what safety needs: nothing suspended.
                guard state.suspended == 0 && (!untilSent || (state.inFlight == 0 && state.open == 0)) else {
                    return false
                }
                state.closed = true
                return true
            }
            if drained {
                return true
            }
            guard let deadline else {
                _ = drainSignal.wait(timeout: .now() + .milliseconds(100))
                continue
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero {
                return false
            }
            let (seconds, attoseconds) = remaining.components
            let nanoseconds = Int(min(seconds, 3_600)) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
            _ = drainSignal.wait(timeout: .now() + .nanoseconds(nanoseconds))
        }
    }

    /// Closes admission and answers every request still unanswered with `shutdownResponse`.
    func answerUnanswered() -> Int {
        let open = shared.withLock { state -> [(UInt64, ConnectionHandle)] in
            state.closed = true
            return state.entries.compactMap { id, entry in
                if case .answered = entry.phase { return nil }
                return (id, entry.connection)
            }
        }
        for (requestID, connection) in open {
            respond(requestID: requestID, connection: connection, response: configuration.shutdownResponse)
        }
        return open.count
    }

    private func signalIfDraining() {
        if shared.withLock({ $0.draining }) {
            drainSignal.signal()
        }
    }

    // MARK: Request parts

    /// The body buffer goes, and with it its bytes from `bufferedBodyBytes`.
    private func releaseBody(_ context: RequestContext) {
        let capacity = context.body.capacity
        context.body = []
        if capacity > 0 {
            bufferedBodyBytes.add(-capacity, ordering: .relaxed)
        }
    }

    static func record(_ connection: OpaquePointer) -> ConnectionRecord? {
        guard let raw = cmhd_socket_context(connection) else { return nil }
        return Unmanaged<ConnectionRecord>.fromOpaque(raw).takeUnretainedValue()
    }

    private static func isChunked(_ connection: OpaquePointer) -> Bool {
        guard let value = MHD_lookup_connection_value(connection, .HEADER_KIND, "Transfer-Encoding") else {
            return false
        }
        return String(cString: value).lowercased().contains("chunked")
    }

    private static func contentLength(_ connection: OpaquePointer) -> Int? {
        guard let value = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length") else {
            return nil
        }
        return Int(String(cString: value).trimmingSuffix(while: { $0 == " " }))
    }

    static func peerAddress(_ connection: OpaquePointer) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        guard cmhd_connection_peer(connection, &buffer, buffer.count) else { return nil }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func expectsContinue(_ connection: OpaquePointer) -> Bool {
        guard let value = MHD_lookup_connection_value(connection, .HEADER_KIND, "Expect") else {
            return false
        }
        return String(cString: value).lowercased() == "100-continue"
    }

    private final class Pairs {
        var items: [(String, String)] = []
    }

    /// Query arguments (first value wins) or headers (names lowercased, repeats joined with ", ").
    private static func values(of connection: OpaquePointer, kind: MHD_ValueKind, join: Bool) -> [String: String] {
        let pairs = Pairs()
        withExtendedLifetime(pairs) {
            _ = MHD_get_connection_values(
                connection,
                kind,
                { cls, _, key, value in
                    guard let cls, let key else { return .YES }
                    Unmanaged<Pairs>.fromOpaque(cls).takeUnretainedValue().items.append(
                        (String(cString: key), value.map { String(cString: $0) } ?? "")
                    )
                    return .YES
                },
                Unmanaged.passUnretained(pairs).toOpaque()
            )
        }
        var result: [String: String] = [:]
        result.reserveCapacity(pairs.items.count)
        for (key, value) in pairs.items {
            if join {
                let name = key.lowercased()
                if let existing = result[name] {
                    result[name] = existing + ", " + value
                } else {
                    result[name] = value
                }
            } else if result[key] == nil {
                result[key] = value
            }
        }
        return result
    }
}

extension DaemonCore {
    private final class FieldList {
        var items: [RequestHygiene.Field] = []
    }

    /// The header fields with their lengths as libmicrohttpd counted them (a NUL inside a value shows).
    static func fields(of connection: OpaquePointer) -> [RequestHygiene.Field] {
        let list = FieldList()
        withExtendedLifetime(list) {
            _ = MHD_get_connection_values_n(
                connection,
                .HEADER_KIND,
                { cls, _, key, keySize, value, valueSize in
                    guard let cls else { return .YES }
                    let name = key.map { Array(UnsafeRawBufferPointer(start: $0, count: keySize)) } ?? []
                    let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: valueSize)) } ?? []
                    Unmanaged<FieldList>.fromOpaque(cls).takeUnretainedValue().items.append(
                        RequestHygiene.Field(name: name, value: bytes)
                    )
                    return .YES
                },
                Unmanaged.passUnretained(list).toOpaque()
            )
        }
        return list.items
    }
}

/// The address to bind, as the `struct sockaddr` MHD_OPTION_SOCK_ADDR wants.
struct BindAddress {
    private enum Storage {
        case v4(sockaddr_in)
        case v6(sockaddr_in6)
    }

    private let storage: Storage

    init?(_ text: String, port: UInt16) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr = v4
            storage = .v4(address)
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            address.sin6_addr = v6
            storage = .v6(address)
            return
        }
        return nil
    }

    var isIPv6: Bool {
        if case .v6 = storage { return true }
        return false
    }

    func withSocketAddress<R>(_ body: (UnsafePointer<sockaddr>) -> R) -> R {
        switch storage {
        case .v4(var address):
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body)
            }
        case .v6(var address):
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body)
            }
        }
    }
}

extension String {
    fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var end = endIndex
        while end > startIndex, predicate(self[index(before: end)]) {
            end = index(before: end)
        }
        return String(self[startIndex..<end])
    }
}
