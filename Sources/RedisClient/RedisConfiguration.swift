/// One Redis Sentinel's address.
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Where and how to connect: the parsed form of `redis://[[user]:password@]host[:port][/db]`, or of
/// `redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/db]` (decision 0026): the
/// Sentinels to ask where the master named MASTER is (port 26379 by default); user, password and database
/// are the master's. With Sentinels, `host` and `port` are only where the master was last seen.
///
/// `description` never shows the password.
public struct RedisConfiguration: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Sentinels to ask for the master's address on every (re)connect; empty: connect to `host:port`.
    public var sentinels: [RedisEndpoint] = []
    /// The master's name in the Sentinels' configuration (`sentinel monitor NAME ...`).
    public var masterName: String?
    /// An ACL user (Redis 6+); with a password it is sent as `AUTH user password`.
    public var user: String?
    public var password: String?
    public var database: Int

    public init(
        host: String = "localhost", port: Int = 6379, user: String? = nil, password: String? = nil,
        database: Int = 0
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`. The port defaults to 6379 and the database to 0;
    /// user and password may be percent-encoded; an IPv6 host goes in brackets (`redis://[::1]:6379`).
    /// `rediss://` (TLS) is refused: the hiredis this wraps has no TLS.
    public init(url: String) throws(RedisError) {
        guard let schemeEnd = url.firstRange(of: "://") else {
            throw Self.invalid("expected redis://host[:port][/db]")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "redis": break
        case "redis-sentinel":
            try self.init(sentinelURL: url[schemeEnd.upperBound...])
            return
        case "rediss": throw Self.invalid("rediss:// (TLS) is not supported: this client speaks plain TCP only")
        default: throw Self.invalid("unsupported scheme '\(scheme)', expected redis://")
        }
        var rest = url[schemeEnd.upperBound...]
        if rest.contains("?") || rest.contains("#") {
            throw Self.invalid("query parameters and fragments are not supported")
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }

        var user: String?
        var password: String?
        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.percentDecoded(userInfo[..<colon])
                password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...])
            } else {
                user = try Self.percentDecoded(userInfo)
            }
            if user?.isEmpty == true { user = nil }
            if password?.isEmpty == true { password = nil }
        }

        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw Self.invalid("unterminated IPv6 address") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw Self.invalid("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.firstIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
        }
        guard !host.isEmpty else { throw Self.invalid("missing host") }

        var port = 6379
        if let portText {
            guard let value = Int(portText), (1...65_535).contains(value) else {
                throw Self.invalid("port must be a number from 1 to 65535, got '\(portText)'")
            }
            port = value
        }

        var database = 0
        if !path.isEmpty {
            guard let value = Int(path), value >= 0 else {
                throw Self.invalid("database must be a non-negative number, got '\(path)'")
            }
            database = value
        }
        self.init(host: String(host), port: port, user: user, password: password, database: database)
    }

    /// `redis-sentinel://...`: what follows the scheme.
    private init(sentinelURL rest: Substring) throws(RedisError) {
        guard let slash = rest.firstIndex(of: "/") else {
            throw Self.invalid("expected redis-sentinel://host[:port][,host[:port]...]/MASTER[/db]")
        }
        let path = rest[rest.index(after: slash)...]
        // The Sentinels' list as a redis:// URL per host, which parses user, password and port the usual way.
        let authority = rest[..<slash]
        var userInfo: Substring = ""
        var hosts = authority
        if let at = authority.lastIndex(of: "@") {
            userInfo = authority[...at]
            hosts = authority[authority.index(after: at)...]
        }
        var sentinels: [RedisEndpoint] = []
        var first: RedisConfiguration?
        for host in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            guard !host.isEmpty else { throw Self.invalid("an empty address in the Sentinels' list") }
            var hostPort = String(host)
            let hasPort = hostPort.hasPrefix("[") ? hostPort.contains("]:") : hostPort.contains(":")
            if !hasPort { hostPort += ":26379" }  // the Sentinel's default port
            let parsed = try RedisConfiguration(url: "redis://" + userInfo + hostPort)
            first = first ?? parsed
            sentinels.append(RedisEndpoint(host: parsed.host, port: parsed.port))
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard let name = parts.first, !name.isEmpty, parts.count <= 2 else {
            throw Self.invalid("expected the master's name after the Sentinels: redis-sentinel://hosts/MASTER[/db]")
        }
        var database = 0
        if parts.count == 2, !parts[1].isEmpty {
            guard let value = Int(parts[1]), value >= 0 else {
                throw Self.invalid("database must be a non-negative number, got '\(parts[1])'")
            }
            database = value
        }
        guard let first, Set(sentinels).count == sentinels.count else {
            throw Self.invalid("a Sentinel is listed twice")
        }
        self.init(
            host: first.host, port: first.port, user: first.user, password: first.password, database: database)
        self.sentinels = sentinels
        self.masterName = try Self.percentDecoded(name)
    }

    public var description: String {
        var text = sentinels.isEmpty ? "redis://" : "redis-sentinel://"
        if user != nil || password != nil {
            text += user ?? ""
            if password != nil { text += ":***" }
            text += "@"
        }
        if sentinels.isEmpty {
            text += host.contains(":") ? "[\(host)]" : host
            text += ":\(port)"
        } else {
            text += sentinels.map(\.description).joined(separator: ",") + "/" + (masterName ?? "")
        }
        if database != 0 { text += "/\(database)" }
        return text
    }

    private static func invalid(_ message: String) -> RedisError {
        // The message never repeats the URL: it may hold a password.
        RedisError(kind: .invalidURL, message: "invalid Redis URL: " + message)
    }

    private static func percentDecoded(_ text: Substring) throws(RedisError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard iterator.count >= 2,
                let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16)
            else {
                throw invalid("bad percent-encoding in the user information")
            }
            bytes.append(value)
            iterator = iterator.dropFirst(2)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
