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

    public init(
        method: String,
        path: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        body: [UInt8] = [],
        bodyTooLarge: Bool = false
    ) {
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
