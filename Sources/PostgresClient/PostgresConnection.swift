internal import CLibPQ
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The owner of one libpq connection. Every call blocks the calling thread until the server answered, so use it
/// from a dedicated thread (never from Swift's cooperative pool), and from one thread at a time: it is not
/// `Sendable`.
///
/// Parameters and results use PostgreSQL's text format; values are always sent as parameters, never spliced
/// into SQL. The session runs with `TimeZone=UTC` and `DateStyle=ISO` (set as startup options, so they hold
/// after `reset()` too) and `client_encoding=UTF8`.
///
/// Connection loss: the call that meets it throws `connectionLost` (retryable), `isOpen` turns false, and every
/// later call throws `connectionLost` at once without touching the network. Then either call `reset()`, which
/// reconnects with the same parameters and restores prepared statements and LISTENs, or drop this object and
/// open a new one. Nothing reconnects behind the owner's back: a transaction that was cut off must be redone
/// by the owner, who knows whether that is safe.
public final class PostgresConnection {
    private var handle: OpaquePointer?
    private var logger: Logger
    /// Passwords to scrub from connection error messages (libpq echoes a URL it cannot parse).
    private let secrets: [String]
    /// Statements made with `prepare`, remade by `reset()`.
    private var preparedStatements: [String: String] = [:]
    /// Channels this connection LISTENs on, renewed by `reset()`.
    private var channels: [String] = []
    var inPipeline = false
    /// Whether the current loss was logged already (calls after a loss fail quietly).
    private var reportedLoss = false

    /// The server process serving this connection (`pg_backend_pid()`), for logs and `pg_terminate_backend`.
    public private(set) var backendPID: Int32 = 0

    /// The default when the URL has no `connect_timeout`.
    public static let defaultConnectTimeoutSeconds = 5
    static let sessionOptions = "-c TimeZone=UTC -c DateStyle=ISO"

    /// TCP keepalive defaults, used unless the URL sets its own (`keepalives_idle=10`, ...): a peer that
    /// vanished (a cut link, a host gone) is noticed after about idle + interval x count = 5 s of silence,
    /// and unacknowledged data is given up after `tcp_user_timeout` ms, instead of the kernel's two hours
    /// and fifteen minutes. The same values go to the server as session settings (`tcp_keepalives_*`,
    /// `tcp_user_timeout`), so the server also ends a session whose client vanished, and with it the
    /// session's advisory locks (the outbox relay's leadership passes on within seconds).
    public static let defaultKeepalives: [(keyword: String, value: String)] = [
        ("keepalives", "1"), ("keepalives_idle", "2"), ("keepalives_interval", "1"), ("keepalives_count", "3"),
        ("tcp_user_timeout", "5000"),
    ]

    /// Opens a connection from a `postgresql://user:password@host:port/database?option=value` URL (any libpq
    /// connection string works). Adds `connect_timeout=5`, `application_name=seat-inventory` and the keepalive
    /// settings of `defaultKeepalives` unless the URL sets them. The password never appears in logs or errors.
    public init(url: String, logger: Logger) throws(PostgresError) {
        var secrets = Self.passwords(in: url)
        let parsed = try Self.parse(url, secrets: secrets)
        if let password = parsed.password, !password.isEmpty, !secrets.contains(password) { secrets.append(password) }
        self.secrets = secrets
        self.logger = logger
        self.logger[metadataKey: "db.target"] = "\(parsed.target)"

        var options = Self.sessionOptions
        if let urlOptions = parsed.options, !urlOptions.isEmpty { options = urlOptions + " " + options }
        // The server's side of the keepalives, before the URL's own options (the later `-c` wins).
        let keepalives = Self.defaultKeepalives.map { ($0.keyword, parsed.values[$0.keyword] ?? $0.value) }
        if keepalives.first(where: { $0.0 == "keepalives" })?.1 != "0" {
            let server = keepalives.compactMap { keyword, value -> String? in
                switch keyword {
                case "keepalives_idle": "-c tcp_keepalives_idle=\(value)"
                case "keepalives_interval": "-c tcp_keepalives_interval=\(value)"
                case "keepalives_count": "-c tcp_keepalives_count=\(value)"
                case "tcp_user_timeout": "-c tcp_user_timeout=\(value)"
                default: nil
                }
            }
            options = server.joined(separator: " ") + " " + options
        }
        // Later keywords override earlier ones: ours go around the expanded URL as defaults (before) and
        // requirements (after).
        let keywords =
            ["connect_timeout", "application_name"] + Self.defaultKeepalives.map(\.keyword)
            + ["dbname", "client_encoding", "options"]
        let values =
            [String(Self.defaultConnectTimeoutSeconds), "seat-inventory"] + Self.defaultKeepalives.map(\.value)
            + [url, "UTF8", options]
        let handle = withCStringArray(keywords) { keywords in
            withCStringArray(values) { values in PQconnectdbParams(keywords, values, 1) }
        }
        guard let handle else {
            throw PostgresError(kind: .connectionFailed, message: "libpq could not allocate a connection")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = Self.redact(Self.connectionMessage(handle).message, secrets: secrets)
            PQfinish(handle)
            self.logger.debug("connection failed", metadata: ["error": "\(message)"])
            throw PostgresError(
                kind: .connectionFailed,
                message: message,
                isRetryable: !Self.isAuthenticationFailure(message)
            )
        }
        self.handle = handle
        self.backendPID = PQbackendPID(handle)
        // Verbose messages carry the SQLSTATE of a FATAL error that ends the session (57P01 for
        // pg_terminate_backend), which libpq reports only in the connection's message, not as a result field.
        PQsetErrorVerbosity(handle, PQERRORS_VERBOSE)
        PQsetNoticeReceiver(
            handle,
            { context, result in
                guard let context, let result else { return }
                Unmanaged<PostgresConnection>.fromOpaque(context).takeUnretainedValue().receiveNotice(result)
            },
            Unmanaged.passUnretained(self).toOpaque()
        )
        self.logger.debug("connected", metadata: ["db.pid": "\(backendPID)"])
    }

    deinit {
        close()
    }

    /// True while libpq considers the connection good, as of the last call (a server that went away is only
    /// noticed by the next call).
    public var isOpen: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// Whether the session is inside a transaction block (including a failed one), as of the last call.
    public var isInTransaction: Bool {
        guard let handle else { return false }
        let status = PQtransactionStatus(handle)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR || status == PQTRANS_ACTIVE
    }

    /// Closes the connection. Idempotent; `deinit` closes too.
    public func close() {
        guard let handle else { return }
        PQfinish(handle)
        self.handle = nil
        logger.debug("connection closed", metadata: ["db.pid": "\(backendPID)"])
    }

    /// Reconnects with the same parameters after a loss (or at any time: a healthy connection is dropped and
    /// remade). Session settings come back with the connection; statements made with `prepare` are prepared
    /// again and `listen` channels are listened to again. Notifications sent while disconnected are lost.
    /// Throws `connectionFailed` if the server cannot be reached; after `close()` open a new connection instead.
    public func reset() throws(PostgresError) {
        guard let handle else {
            throw PostgresError(
                kind: .connectionFailed,
                message: "connection was closed by its owner; open a new one",
                isRetryable: false
            )
        }
        inPipeline = false
        reportedLoss = false
        PQreset(handle)
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = Self.redact(Self.connectionMessage(handle).message, secrets: secrets)
            throw PostgresError(
                kind: .connectionFailed,
                message: message,
                isRetryable: !Self.isAuthenticationFailure(message)
            )
        }
        backendPID = PQbackendPID(handle)
        logger.info("reconnected", metadata: ["db.pid": "\(backendPID)"])
        let statements = preparedStatements
        preparedStatements = [:]
        for (name, sql) in statements.sorted(by: { $0.key < $1.key }) { try prepare(name, sql) }
        for channel in channels { try query("LISTEN " + escapeIdentifier(channel, handle: handle)) }
    }

    // MARK: Statements

    /// Runs one statement with `$1`, `$2`... parameters (nil is NULL) and returns its rows.
    @discardableResult
    public func query(
        _ sql: String,
        _ parameters: [(any PostgresEncodable)?] = []
    ) throws(PostgresError)
        -> PostgresResult
    {
        let handle = try liveHandle()
        let result = try withParameters(parameters) { count, values in
            PQexecParams(handle, sql, count, nil, values, nil, nil, 0)
        }
        return try consume(result, handle: handle)
    }

    /// Prepares a named statement on this connection. Preparing the same name with the same SQL again is a
    /// no-op, so callers may prepare lazily; the same name with other SQL is the server's error 42P05.
    public func prepare(_ name: String, _ sql: String) throws(PostgresError) {
        if preparedStatements[name] == sql { return }
        let handle = try liveHandle()
        let result = PQprepare(handle, name, sql, 0, nil)
        _ = try consume(result, handle: handle)
        preparedStatements[name] = sql
    }

    /// Whether `prepare` made a statement of this name on this connection.
    public func isPrepared(_ name: String) -> Bool { preparedStatements[name] != nil }

    /// Runs a statement made with `prepare`.
    @discardableResult
    public func execute(
        prepared name: String,
        _ parameters: [(any PostgresEncodable)?] = []
    ) throws(PostgresError)
        -> PostgresResult
    {
        let handle = try liveHandle()
        let result = try withParameters(parameters) { count, values in
            PQexecPrepared(handle, name, count, values, nil, nil, 0)
        }
        return try consume(result, handle: handle)
    }

    /// Runs a script of one or more statements without parameters (simple query protocol), e.g. a migration.
    /// Statements run in order and stop at the first error, which is thrown. Without BEGIN/COMMIT of its own,
    /// the whole script is one implicit transaction: a failure undoes the statements before it too.
    public func simpleQuery(_ sql: String) throws(PostgresError) {
        let handle = try liveHandle()
        _ = try consume(PQexec(handle, sql), handle: handle)
    }

    /// Runs `body` inside BEGIN / COMMIT. If `body` throws, the transaction is rolled back and the body's error
    /// is rethrown (also when the connection broke: then there is nothing to roll back). If the body caught an
    /// error that aborted the transaction, or ended the transaction itself, this throws instead of committing.
    /// Nested calls are refused (the server has no nested BEGIN).
    ///
    /// A `connectionLost` thrown by COMMIT itself leaves the outcome unknown: the commit may have happened.
    public func transaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let handle = try liveHandle()
        guard PQtransactionStatus(handle) == PQTRANS_IDLE else {
            throw PostgresError(
                kind: .query,
                message: "transaction() called inside a transaction block; nesting is not supported",
                isRetryable: false
            )
        }
        try query("BEGIN")
        let value: T
        do {
            value = try body(self)
        } catch {
            rollbackQuietly()
            throw error
        }
        let current = try liveHandle()
        switch PQtransactionStatus(current) {
        case PQTRANS_INTRANS:
            try commit()
            return value
        case PQTRANS_INERROR:
            rollbackQuietly()
            throw PostgresError(
                kind: .query,
                message: "the transaction was aborted by an earlier error that the body did not rethrow; rolled back",
                sqlState: "25P02",
                isRetryable: false
            )
        default:
            throw PostgresError(
                kind: .query,
                message: "the transaction was ended inside the body; nothing to commit",
                isRetryable: false
            )
        }
    }

    private func commit() throws(PostgresError) {
        do {
            try query("COMMIT")
        } catch {
            guard error.kind == .connectionLost else { throw error }
            var unknown = error
            unknown.message += " (during COMMIT: the transaction may or may not have committed)"
            throw unknown
        }
    }

    // MARK: LISTEN / NOTIFY

    /// LISTENs on a channel (any name: it is quoted as an identifier, so case and punctuation are kept).
    public func listen(_ channel: String) throws(PostgresError) {
        let handle = try liveHandle()
        try query("LISTEN " + escapeIdentifier(channel, handle: handle))
        if !channels.contains(channel) { channels.append(channel) }
    }

    /// Stops listening on a channel.
    public func unlisten(_ channel: String) throws(PostgresError) {
        let handle = try liveHandle()
        try query("UNLISTEN " + escapeIdentifier(channel, handle: handle))
        channels.removeAll { $0 == channel }
    }

    /// Sends a notification (`pg_notify`), delivered to listeners when the current transaction commits.
    public func notify(_ channel: String, payload: String = "") throws(PostgresError) {
        try query("SELECT pg_notify($1, $2)", [channel, payload])
    }

    /// Waits up to `timeout` for notifications (may return several, or none). Notifications that already arrived,
    /// including during earlier queries, are returned at once.
    public func waitForNotifications(timeout: Duration) throws(PostgresError) -> [PostgresNotification] {
        let handle = try liveHandle()
        var notifications = drainNotifications(handle)
        guard PQconsumeInput(handle) == 1 else { throw lost(handle) }
        notifications += drainNotifications(handle)
        if !notifications.isEmpty { return notifications }

        let socket = PQsocket(handle)
        guard socket >= 0 else { throw lost(handle) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let remaining = clock.now.duration(to: deadline)
            guard remaining > .zero else { return [] }
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Self.milliseconds(remaining))
            if ready < 0 {
                let code = errno
                if code == EINTR { continue }
                throw PostgresError(
                    kind: .protocolError,
                    message: "poll() failed: \(String(cString: strerror(code)))",
                    isRetryable: false
                )
            }
            if ready == 0 { continue }
            guard PQconsumeInput(handle) == 1 else { throw lost(handle) }
            notifications = drainNotifications(handle)
            if !notifications.isEmpty { return notifications }
            if PQstatus(handle) != CONNECTION_OK { throw lost(handle) }
        }
    }

    // MARK: Internals shared with the pipeline

    /// The handle, if the connection is usable; else the error every call throws after a loss or close.
    func liveHandle() throws(PostgresError) -> OpaquePointer {
        guard let handle else {
            throw PostgresError(kind: .connectionLost, message: "connection is closed", isRetryable: false)
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            var error = lost(handle)
            error.message = "connection was lost earlier: " + error.message
            throw error
        }
        guard !inPipeline else {
            throw PostgresError(kind: .protocolError, message: "a pipeline is running", isRetryable: false)
        }
        return handle
    }

    /// Turns one `PGresult` into a result or an error and frees it. nil from libpq means nothing was sent or
    /// received (connection gone, or out of memory).
    func consume(_ result: OpaquePointer?, handle: OpaquePointer) throws(PostgresError) -> PostgresResult {
        guard let result else { throw failure(handle) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE:
            return Self.copy(result)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR:
            throw error(from: result, handle: handle)
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            abandonCopy(handle)
            throw PostgresError(kind: .protocolError, message: "COPY is not supported by this client")
        default:
            let text = String(cString: PQresStatus(status))
            throw PostgresError(kind: .protocolError, message: "unexpected result status \(text)")
        }
    }

    func error(from result: OpaquePointer, handle: OpaquePointer) -> PostgresError {
        func field(_ code: Int32) -> String? {
            guard let value = PQresultErrorField(result, code) else { return nil }
            return String(cString: value)
        }
        let sqlState = field(CLIBPQ_DIAG_SQLSTATE)
        if PQstatus(handle) != CONNECTION_OK { return lost(handle) }
        var message = field(CLIBPQ_DIAG_MESSAGE_PRIMARY) ?? Self.clean(String(cString: PQresultErrorMessage(result)))
        if message.isEmpty { message = Self.connectionMessage(handle).message }
        return PostgresError(
            kind: .query,
            message: message,
            sqlState: sqlState,
            detail: field(CLIBPQ_DIAG_MESSAGE_DETAIL),
            constraint: field(CLIBPQ_DIAG_CONSTRAINT_NAME),
            hint: field(CLIBPQ_DIAG_MESSAGE_HINT)
        )
    }

    /// The error for a call that got no result at all.
    func failure(_ handle: OpaquePointer) -> PostgresError {
        if PQstatus(handle) != CONNECTION_OK { return lost(handle) }
        let message = Self.connectionMessage(handle).message
        return PostgresError(
            kind: .protocolError,
            message: message.isEmpty ? "libpq returned no result" : message,
            isRetryable: false
        )
    }

    /// `connectionLost` in the best words available: the server's FATAL message (and SQLSTATE) if it sent one,
    /// then libpq's.
    func lost(_ handle: OpaquePointer) -> PostgresError {
        let (message, sqlState) = Self.connectionMessage(handle)
        if !reportedLoss {
            reportedLoss = true
            logger.info("connection lost", metadata: ["db.pid": "\(backendPID)", "error": "\(message)"])
        }
        return PostgresError(
            kind: .connectionLost,
            message: message.isEmpty ? "connection lost" : message,
            sqlState: sqlState,
            isRetryable: true
        )
    }

    /// Converts parameters to the C strings libpq wants, for the duration of `body`.
    func withParameters<R>(
        _ parameters: [(any PostgresEncodable)?],
        _ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> R
    ) throws(PostgresError) -> R {
        if parameters.isEmpty { return body(0, nil) }
        return try EncodedParameters(parameters).withPointers(body)
    }

    // MARK: Private helpers

    func rollbackQuietly() {
        guard let handle, PQstatus(handle) == CONNECTION_OK, PQtransactionStatus(handle) != PQTRANS_IDLE else {
            return
        }
        do {
            _ = try consume(PQexec(handle, "ROLLBACK"), handle: handle)
        } catch {
            logger.debug("rollback failed", metadata: ["error": "\(error)"])
        }
    }

    private func drainNotifications(_ handle: OpaquePointer) -> [PostgresNotification] {
        var notifications: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            let value = notify.pointee
            notifications.append(
                PostgresNotification(
                    channel: String(cString: value.relname),
                    payload: String(cString: value.extra),
                    pid: value.be_pid
                )
            )
            PQfreemem(notify)
        }
        return notifications
    }

    private func escapeIdentifier(_ name: String, handle: OpaquePointer) throws(PostgresError) -> String {
        guard let escaped = PQescapeIdentifier(handle, name, name.utf8.count) else {
            throw PostgresError(
                kind: .query,
                message: Self.connectionMessage(handle).message,
                isRetryable: false
            )
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }

    /// After a COPY started by a script, end it so the connection stays usable.
    private func abandonCopy(_ handle: OpaquePointer) {
        while let result = PQgetResult(handle) {
            let status = PQresultStatus(result)
            PQclear(result)
            if status == PGRES_COPY_IN {
                _ = PQputCopyEnd(handle, "COPY is not supported by this client")
            } else if status == PGRES_COPY_OUT {
                var buffer: UnsafeMutablePointer<CChar>?
                while PQgetCopyData(handle, &buffer, 0) > 0 { PQfreemem(buffer) }
            } else if status == PGRES_COPY_BOTH {
                break
            }
        }
    }

    /// Notices and warnings go to the log instead of stderr; a FATAL one is kept to explain a later loss.
    private func receiveNotice(_ result: OpaquePointer) {
        func field(_ code: Int32) -> String? {
            guard let value = PQresultErrorField(result, code) else { return nil }
            return String(cString: value)
        }
        let severity = field(CLIBPQ_DIAG_SEVERITY_NONLOCALIZED) ?? "NOTICE"
        let message = field(CLIBPQ_DIAG_MESSAGE_PRIMARY) ?? Self.clean(String(cString: PQresultErrorMessage(result)))
        let sqlState = field(CLIBPQ_DIAG_SQLSTATE)
        let metadata: Logger.Metadata = [
            "db.severity": "\(severity)", "db.sqlstate": "\(sqlState ?? "")", "db.pid": "\(backendPID)",
        ]
        switch severity {
        case "WARNING", "FATAL", "PANIC":
            logger.info("server: \(message)", metadata: metadata)
        default:
            logger.debug("server: \(message)", metadata: metadata)
        }
    }

    static func copy(_ result: OpaquePointer) -> PostgresResult {
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        var names: [String] = []
        names.reserveCapacity(columnCount)
        for column in 0..<columnCount { names.append(String(cString: PQfname(result, Int32(column)))) }
        var values: [String?] = []
        values.reserveCapacity(columnCount * rowCount)
        for row in 0..<rowCount {
            for column in 0..<columnCount {
                if PQgetisnull(result, Int32(row), Int32(column)) != 0 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, Int32(row), Int32(column)))
                    let start = UnsafeRawPointer(PQgetvalue(result, Int32(row), Int32(column)))
                    let bytes = UnsafeRawBufferPointer(start: start, count: length)
                    values.append(String(decoding: bytes, as: UTF8.self))
                }
            }
        }
        let storage = PostgresResultStorage(columnNames: names, values: values)
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount { rows.append(PostgresRow(storage: storage, offset: row * columnCount)) }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return PostgresResult(
            rows: rows,
            affectedRows: affected,
            commandTag: String(cString: PQcmdStatus(result)),
            columnNames: names
        )
    }

    /// libpq's connection message (verbose) on one line, without LOCATION lines, and the SQLSTATE of the first
    /// server message in it (`FATAL:  57P01: terminating connection due to administrator command`).
    static func connectionMessage(_ handle: OpaquePointer) -> (message: String, sqlState: String?) {
        parseConnectionMessage(String(cString: PQerrorMessage(handle)))
    }

    static func parseConnectionMessage(_ raw: String) -> (message: String, sqlState: String?) {
        var sqlState: String?
        var parts: [String] = []
        for line in raw.split(separator: "\n") {
            var text = line.drop(while: { $0 == " " || $0 == "\t" })
            if text.hasPrefix("LOCATION:") || text.isEmpty { continue }
            for severity in ["FATAL:", "PANIC:", "ERROR:"] where text.hasPrefix(severity) {
                let rest = text.dropFirst(severity.count).drop(while: { $0 == " " })
                let code = rest.prefix(5)
                if code.count == 5, code.allSatisfy({ $0.isASCII && ($0.isNumber || $0.isUppercase) }),
                    rest.dropFirst(5).hasPrefix(": ")
                {
                    if sqlState == nil { sqlState = String(code) }
                    text = Substring(severity + " ") + rest.dropFirst(7)
                }
            }
            parts.append(String(text))
        }
        return (parts.joined(separator: " "), sqlState)
    }

    /// libpq's multi-line messages on one line.
    static func clean(_ message: String) -> String {
        var lines: [Substring] = []
        for line in message.split(whereSeparator: { $0 == "\n" }) {
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if !trimmed.isEmpty { lines.append(trimmed) }
        }
        return lines.joined(separator: " ")
    }

    static func redact(_ message: String, secrets: [String]) -> String {
        var message = message
        for secret in secrets where !secret.isEmpty {
            message = message.replacing(secret, with: "***")
        }
        return message
    }

    static func isAuthenticationFailure(_ message: String) -> Bool {
        message.contains("authentication failed") || message.contains("no pg_hba.conf entry")
            || message.contains("no password supplied")
    }

    static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: max(0, milliseconds))
    }

    /// The password in a URL, as written and percent-decoded, so error messages can be scrubbed of it.
    static func passwords(in url: String) -> [String] {
        guard let scheme = url.firstRange(of: "://") else { return [] }
        let rest = url[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return [] }
        let userInfo = authority[..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return [] }
        let raw = String(userInfo[userInfo.index(after: colon)...])
        guard !raw.isEmpty else { return [] }
        let decoded = percentDecoded(raw)
        return decoded == raw ? [raw] : [raw, decoded]
    }

    private static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%"), utf8.count >= 2,
                let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Checks the URL with libpq's own parser; returns what logs may show, any `options` it sets, and all the
    /// values it sets (by keyword).
    private static func parse(
        _ url: String,
        secrets: [String]
    ) throws(PostgresError) -> (
        target: String, options: String?, password: String?, values: [String: String]
    ) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &errorMessage) else {
            var message = "invalid connection URL"
            if let errorMessage {
                message += ": " + redact(clean(String(cString: errorMessage)), secrets: secrets)
                PQfreemem(errorMessage)
            }
            throw PostgresError(kind: .connectionFailed, message: message, isRetryable: false)
        }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { values[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        let host = values["host"] ?? values["hostaddr"] ?? "localhost"
        let target =
            "\(values["user"].map { $0 + "@" } ?? "")\(host):\(values["port"] ?? "5432")/\(values["dbname"] ?? "")"
        return (target, values["options"], values["password"], values)
    }
}

/// Parameter texts as NUL-terminated C strings in one buffer (nil offsets are SQL NULLs).
struct EncodedParameters {
    private var buffer: [CChar] = []
    private var offsets: [Int?] = []

    init(_ parameters: [(any PostgresEncodable)?]) throws(PostgresError) {
        offsets.reserveCapacity(parameters.count)
        for (position, parameter) in parameters.enumerated() {
            guard let parameter else {
                offsets.append(nil)
                continue
            }
            offsets.append(buffer.count)
            for byte in parameter.postgresText.utf8 {
                guard byte != 0 else {
                    throw PostgresError(
                        kind: .query,
                        message: "parameter $\(position + 1) contains a NUL byte, which text cannot hold",
                        isRetryable: false
                    )
                }
                buffer.append(CChar(bitPattern: byte))
            }
            buffer.append(0)
        }
    }

    var count: Int32 { Int32(offsets.count) }

    /// `body` gets the count and the array of pointers libpq wants, valid for the call only.
    func withPointers<R>(_ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
        if offsets.isEmpty { return body(0, nil) }
        return buffer.withUnsafeBufferPointer { storage in
            let base = storage.baseAddress
            let pointers: [UnsafePointer<CChar>?] = offsets.map { offset in offset.flatMap { base?.advanced(by: $0) } }
            return pointers.withUnsafeBufferPointer { body(count, $0.baseAddress) }
        }
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the duration of the call.
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { for copy in copies { free(copy) } }
    var pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
