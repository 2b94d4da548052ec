/// One broker node's address.
public struct AMQPEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Where and how to connect.
///
/// `init(url:)` takes `amqp://user:password@host:port/vhost`, the RabbitMQ URI format: user, password and
/// vhost are percent-decoded (`%2f` is "/"). Without userinfo the user and password are `guest`; without a
/// port, 5672; an empty or missing vhost is "/". The query parameters `heartbeat` (seconds) and
/// `connection_timeout` (milliseconds) are honoured, and `queue_type` (`classic` or `quorum`, see
/// `durableQueueType`). `amqps` is not supported.
///
/// **Several nodes of one cluster** (decision 0025): the hosts as a comma-separated list in one URL,
/// `amqp://user:password@host1:5672,host2:5672,host3/vhost` (as libpq's multi-host URLs), or whole URLs
/// separated by commas, which must then agree on everything but the host and port. The first address is
/// `host` and `port`, the others `otherEndpoints`; `AMQPConnection` tries them all.
public struct AMQPConfiguration: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The cluster's other nodes, tried after `host:port` (or before it: see `AMQPConnection`).
    public var otherEndpoints: [AMQPEndpoint] = []
    /// The `x-queue-type` that `AMQPConnection.declareQueue` asks for a durable, non-exclusive,
    /// non-auto-delete queue (the only kind a quorum queue can be) when the declare names none itself:
    /// nil (classic, the broker's default, kept for one node) or "quorum" for a cluster (decision 0025).
    public var durableQueueType: String?
    public var user: String
    public var password: String
    public var vhost: String
    /// The heartbeat interval asked of the broker; `.zero` turns heartbeats off.
    public var heartbeat: Duration
    public var connectTimeout: Duration
    /// Bound on each synchronous request (declare, bind, consume, close, ...). When it passes, rabbitmq-c
    /// closes the socket and the connection is gone.
    public var requestTimeout: Duration
    /// Shown in the broker's management tools (`connection_name` client property).
    public var connectionName: String?

    public init(
        host: String = "localhost", port: Int = 5672, user: String = "guest", password: String = "guest",
        vhost: String = "/", heartbeat: Duration = .seconds(10), connectTimeout: Duration = .seconds(5),
        requestTimeout: Duration = .seconds(10), connectionName: String? = nil
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.vhost = vhost
        self.heartbeat = heartbeat
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.connectionName = connectionName
    }

    /// Every node to try: `host:port` first, then `otherEndpoints`.
    public var endpoints: [AMQPEndpoint] { [AMQPEndpoint(host: host, port: port)] + otherEndpoints }

    public init(url: String) throws(AMQPError) {
        let urls = try Self.splitAddressList(url)
        try self.init(singleURL: urls[0])
        for other in urls.dropFirst() {
            let parsed = try Self(singleURL: other)
            guard
                parsed.user == user, parsed.password == password, parsed.vhost == vhost,
                parsed.heartbeat == heartbeat, parsed.connectTimeout == connectTimeout,
                parsed.durableQueueType == durableQueueType
            else {
                throw AMQPError(
                    kind: .invalidURL,
                    message: "invalid AMQP URL: the URLs of one list must differ only in host and port",
                    isRetryable: false)
            }
            otherEndpoints.append(AMQPEndpoint(host: parsed.host, port: parsed.port))
        }
        let all = endpoints
        guard Set(all).count == all.count else {
            throw AMQPError(
                kind: .invalidURL, message: "invalid AMQP URL: an address is listed twice", isRetryable: false)
        }
    }

    /// One URL per node: `amqp://u:p@h1:1,h2:2/v?q` becomes `amqp://u:p@h1:1/v?q` and `amqp://u:p@h2:2/v?q`;
    /// `amqp://h1,amqp://h2` is split where each URL starts. A URL with one host comes back alone.
    static func splitAddressList(_ url: String) throws(AMQPError) -> [String] {
        let schemePrefix = "amqp://"
        guard url.contains(",") else { return [url] }
        if url.contains("," + schemePrefix) {
            let parts = url.split(separator: "," + schemePrefix, omittingEmptySubsequences: false)
            return [String(parts[0])] + parts.dropFirst().map { schemePrefix + $0 }
        }
        guard url.hasPrefix(schemePrefix) else { return [url] }  // init(singleURL:) says what is wrong
        let rest = url.dropFirst(schemePrefix.count)
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let tail = rest[authorityEnd...]
        var userInfo: Substring = ""
        var hosts = authority
        if let at = authority.lastIndex(of: "@") {
            userInfo = authority[...at]
            hosts = authority[authority.index(after: at)...]
        }
        guard hosts.contains(",") else { return [url] }  // a comma in the password, say
        return try hosts.split(separator: ",", omittingEmptySubsequences: false).map { (host) throws(AMQPError) in
            guard !host.isEmpty else {
                throw AMQPError(
                    kind: .invalidURL, message: "invalid AMQP URL: an empty address in the host list",
                    isRetryable: false)
            }
            return schemePrefix + userInfo + host + tail
        }
    }

    private init(singleURL url: String) throws(AMQPError) {
        self.init()
        func invalid(_ why: String) -> AMQPError {
            // Never echo the URL itself: it may carry the password.
            AMQPError(kind: .invalidURL, message: "invalid AMQP URL: \(why)", isRetryable: false)
        }
        let schemePrefix = "amqp://"
        guard url.hasPrefix(schemePrefix) else {
            throw invalid(url.hasPrefix("amqps://") ? "amqps is not supported" : "the scheme must be amqp://")
        }
        var rest = Substring(url.dropFirst(schemePrefix.count))

        var query: Substring?
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring?
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.percentDecoded(userInfo[..<colon], what: "user")
                password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], what: "password")
            } else {
                user = try Self.percentDecoded(userInfo, what: "user")
                password = ""
            }
            guard !user.isEmpty else { throw invalid("empty user") }
        }

        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.firstIndex(of: ":") {
            host = try Self.percentDecoded(hostPort[..<colon], what: "host")
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = try Self.percentDecoded(hostPort, what: "host")
        }
        guard !host.isEmpty else { throw invalid("no host") }
        if let portText {
            guard let number = Int(portText), (1...65_535).contains(number) else {
                throw invalid("port \"\(portText)\" is not a number from 1 to 65535")
            }
            port = number
        }

        if let path, !path.isEmpty {
            guard !path.contains("/") else { throw invalid("the vhost must be one path segment (write / as %2f)") }
            vhost = try Self.percentDecoded(path, what: "vhost")
        }

        if let query {
            for pair in query.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                let key = parts[0]
                let value = parts.count > 1 ? parts[1] : ""
                switch key {
                case "heartbeat":
                    guard let seconds = Int(value), seconds >= 0 else { throw invalid("heartbeat must be seconds") }
                    heartbeat = .seconds(seconds)
                case "connection_timeout":
                    guard let millis = Int(value), millis > 0 else {
                        throw invalid("connection_timeout must be milliseconds")
                    }
                    connectTimeout = .milliseconds(millis)
                case "queue_type":
                    switch value {
                    case "classic": durableQueueType = nil
                    case "quorum": durableQueueType = "quorum"
                    default: throw invalid("queue_type must be classic or quorum")
                    }
                default:
                    break  // Other RabbitMQ URI parameters (channel_max, ...) are not used here.
                }
            }
        }
    }

    /// The URL with the password replaced by `***` (every address, comma-separated).
    public var description: String {
        let vhostText = vhost == "/" ? "" : Self.percentEncoded(vhost)
        let hosts = endpoints.map(\.description).joined(separator: ",")
        return "amqp://\(Self.percentEncoded(user)):***@\(hosts)/\(vhostText)"
    }

    static func percentDecoded(_ text: Substring, what: String) throws(AMQPError) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
            else {
                throw AMQPError(
                    kind: .invalidURL, message: "invalid AMQP URL: bad percent-escape in the \(what)",
                    isRetryable: false)
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw AMQPError(
                kind: .invalidURL, message: "invalid AMQP URL: the \(what) is not UTF-8", isRetryable: false)
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    static func percentEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension AMQPConfiguration: CustomDebugStringConvertible, CustomReflectable {
    public var debugDescription: String { description }

    /// `dump` and debuggers see `***` for the password too.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": host, "port": port, "user": user, "password": "***", "vhost": vhost, "heartbeat": heartbeat,
                "connectTimeout": connectTimeout, "requestTimeout": requestTimeout,
                "connectionName": connectionName as Any,
                "otherEndpoints": otherEndpoints, "durableQueueType": durableQueueType as Any,
            ])
    }
}
