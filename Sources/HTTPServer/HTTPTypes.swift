/// One HTTP request, whole: the body has been read (or dropped, when over the limit).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string, percent-decoded by libmicrohttpd.
    public var path: String
    /// Query arguments, decoded (`%xx` and `+`). A name without `=` maps to "". When a name repeats,
    /// the first value wins.
    public var query: [String: String]
    /// Header names lowercased. Repeated headers are joined with ", " (RFC 9110, 5.3).
    public var headers: [String: String]
    public var body: [UInt8]
    /// The body was over `maxBodyBytes` (by its `Content-Length` or as it arrived); `body` is then empty.
    public var bodyTooLarge: Bool
    /// The TCP peer's address (IPv4 dotted, IPv6; an IPv4-mapped IPv6 peer as IPv4), when known.
    public var peerAddress: String?

    public init(
        method: String,
        path: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        body: [UInt8] = [],
        bodyTooLarge: Bool = false,
        peerAddress: String? = nil
    ) {
        self.peerAddress = peerAddress
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.bodyTooLarge = bodyTooLarge
    }
}

public struct HTTPResponse: Sendable {
    /// 100...599; anything else is answered as 500.
    public var status: Int
    /// Sent in order; a name may repeat. `Content-Length` is set by the server.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

public struct HTTPServerConfiguration: Sendable {
    /// 0 picks a free port; `HTTPDaemon.port` tells which.
    public var port: Int
    /// An IPv4 or IPv6 literal.
    public var bindAddress: String = "0.0.0.0"
    public var maxBodyBytes: Int = 65_536
    /// Polling threads (libmicrohttpd's thread pool). Handlers run on them, so they must not block.
    public var threads: Int = 2
    /// Open connections at most; further ones are refused by libmicrohttpd.
    public var connectionLimit: Int = 1_000
    /// An idle connection is closed after this long (whole seconds; a suspended one never times out).
    public var connectionTimeout: Duration = .seconds(30)
    /// The request target (path and query, as sent) may be this long; longer is answered 414 by
    /// `rejectionResponse`. libmicrohttpd answers a head that does not fit `connectionMemoryLimit` itself.
    public var maxTargetBytes: Int = 8_192
    /// The request head (target and header fields) may be this big; bigger is answered 431.
    public var maxHeaderBytes: Int = 16_384
    /// libmicrohttpd's memory pool per connection (MHD_OPTION_CONNECTION_MEMORY_LIMIT): the request head
    /// must fit into it, or the library answers 414 / 431 with its own HTML body. Keep it at about twice
    /// `maxHeaderBytes` so the daemon's own JSON answer comes first.
    public var connectionMemoryLimit: Int = 32_768
    /// The answer to a request the daemon refuses before the handler sees it (framing errors, control
    /// characters, target or head too long). It is sent with `Connection: close`.
    public var rejectionResponse: @Sendable (HTTPRejection) -> HTTPResponse = HTTPRejection.plainText
    /// Open connections beyond which a new connection's first request gets `overloadResponse` (503) and
    /// the connection is closed, rather than waiting in a queue. nil: only libmicrohttpd's `connectionLimit`
    /// (which must be above it: between the two, connections are answered; beyond it they wait in the
    /// kernel's listen backlog, `listenBacklog` long).
    public var maxConnections: Int?
    /// Open connections per TCP peer address; one more is closed at once, before a byte is read.
    public var maxConnectionsPerAddress: Int?
    /// Peers the per-address limit does not apply to (the trusted proxies, whose connections carry many
    /// clients).
    public var exemptFromAddressLimit: @Sendable (String) -> Bool = { _ in false }
    /// Time to send a request's head, counted from the connection's start or the previous response; a
    /// connection past it is closed. nil: none (libmicrohttpd's `connectionTimeout` is idle-only).
    public var headerTimeout: Duration?
    /// Time to send a request's body once its head has arrived; a connection past it is closed.
    public var bodyTimeout: Duration?
    /// The kernel's queue of connections not yet accepted (MHD_OPTION_LISTEN_BACKLOG_SIZE); 0: the
    /// library's default.
    public var listenBacklog: Int = 0
    /// What the first request of a connection over `maxConnections` gets (with `Connection: close`).
    public var overloadResponse = HTTPResponse(
        status: 503,
        headers: [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")],
        body: Array("too many connections\n".utf8)
    )
    /// What `shutdown(timeout:)` answers to requests still unanswered when its timeout passes, and to
    /// requests that arrive on open connections after that.
    public var shutdownResponse = HTTPResponse(
        status: 503,
        headers: [("Content-Type", "text/plain; charset=utf-8")],
        body: Array("server is shutting down\n".utf8)
    )

    public init(
        port: Int,
        bindAddress: String = "0.0.0.0",
        maxBodyBytes: Int = 65_536,
        threads: Int = 2,
        connectionLimit: Int = 1_000,
        connectionTimeout: Duration = .seconds(30)
    ) {
        self.port = port
        self.bindAddress = bindAddress
        self.maxBodyBytes = maxBodyBytes
        self.threads = threads
        self.connectionLimit = connectionLimit
        self.connectionTimeout = connectionTimeout
    }
}

/// Why the daemon refused a request itself, before its handler saw it; the connection is then closed.
public struct HTTPRejection: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The message framing cannot be trusted: repeated `Content-Length`, `Content-Length` with
        /// `Transfer-Encoding`, a transfer coding other than `chunked`, a bad header line, a missing or
        /// repeated `Host` (request smuggling starts with any of these).
        case framing
        /// A control character (raw or percent-encoded) in the target, or one in a header value.
        case controlCharacter
        /// The target is over `maxTargetBytes` (414).
        case targetTooLong
        /// The head is over `maxHeaderBytes` (431).
        case headersTooLarge
    }

    /// Where the problem is.
    public enum Location: Sendable, Equatable {
        case path
        /// The query argument of that name (as sent, percent-decoded).
        case query(String)
        /// The header field of that name (lowercased).
        case header(String)
        /// The request as a whole (its framing, its size).
        case request
    }

    public var kind: Kind
    public var location: Location
    public var message: String

    public init(kind: Kind, location: Location, message: String) {
        self.kind = kind
        self.location = location
        self.message = message
    }

    public var status: Int {
        switch kind {
        case .framing, .controlCharacter: 400
        case .targetTooLong: 414
        case .headersTooLarge: 431
        }
    }

    public var description: String { "\(status) \(kind.rawValue): \(message)" }

    /// The default answer: the message as plain text.
    public static let plainText: @Sendable (HTTPRejection) -> HTTPResponse = { rejection in
        HTTPResponse(
            status: rejection.status,
            headers: [("Content-Type", "text/plain; charset=utf-8")],
            body: Array((rejection.message + "\n").utf8)
        )
    }
}

/// The daemon's own counters (a snapshot).
public struct HTTPServerStatistics: Sendable, Equatable {
    /// Connections libmicrohttpd has open now.
    public var openConnections: Int
    /// Bytes of request bodies held in buffers now (the buffers' capacity, so what was allocated).
    public var bufferedBodyBytes: Int
    /// Connections closed at once because their address had `maxConnectionsPerAddress` open.
    public var refusedPerAddress: Int
    /// Connections answered `overloadResponse` because `maxConnections` were open.
    public var refusedOverloaded: Int
    /// Connections closed because a head or a body took longer than its timeout.
    public var timedOut: Int
}

public struct HTTPServerError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// A configuration value that cannot work (bad address, port out of range, ...).
        case invalidConfiguration
        /// libmicrohttpd could not start the daemon (port in use, no permission, ...).
        case startFailed
    }

    public var kind: Kind
    /// libmicrohttpd's own words where it gave any.
    public var message: String
    /// `errno` right after the failing call, when it was set.
    public var errno: Int32?
    /// Whether trying again later can help (a port in use may be freed; a bad address will not be).
    public var isRetryable: Bool

    public init(kind: Kind, message: String, errno: Int32? = nil, isRetryable: Bool) {
        self.kind = kind
        self.message = message
        self.errno = errno
        self.isRetryable = isRetryable
    }

    public var description: String {
        if let errno {
            return "HTTP server \(kind): \(message) (errno \(errno))"
        }
        return "HTTP server \(kind): \(message)"
    }
}
