#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The REST facade's edge (issue 14, decision 0016): rate limits, connection limits and timeouts, and the
/// proxies whose `X-Forwarded-For` is believed. Defaults are far above what a real buyer does.
public struct EdgeSettings: Sendable, Equatable {
    /// `TRUSTED_PROXIES`: addresses or CIDR ranges (comma-separated) of proxies in front of the facade.
    public var trustedProxies: [AddressRange] = []
    /// `RATE_LIMIT_ENABLED` (`true`): `false` turns the rate limiter off (benchmarks from one address).
    public var rateLimitEnabled = true
    /// `RATE_LIMIT_KEY_PREFIX` (`inventory:ratelimit:`): where the budgets live in Redis; facades that
    /// share it share the budgets.
    public var rateLimitKeyPrefix = "inventory:ratelimit:"
    /// `RATE_LIMIT_WINDOW_SECONDS` (10): every budget below is "so many per this window".
    public var rateLimitWindowSeconds = 10
    /// `RATE_LIMIT_USER_WRITES` (30): POST/PUT requests per authenticated user per window.
    public var userWrites = 30
    /// `RATE_LIMIT_ADDRESS_WRITES` (300): POST/PUT requests per client address per window.
    public var addressWrites = 300
    /// `RATE_LIMIT_USER_READS` (300): `GET /holds/{id}` per authenticated user per window.
    public var userReads = 300
    /// `RATE_LIMIT_ADDRESS_READS` (600): `GET /availability` and `GET /holds/{id}` per client address.
    public var addressReads = 600
    /// `HTTP_MAX_CONNECTIONS` (4096): open connections in total; beyond, requests are answered 503.
    public var maxConnections = 4_096
    /// `HTTP_MAX_CONNECTIONS_PER_ADDRESS` (256): open connections per TCP peer (generous: a venue's, a
    /// campus's or a carrier's NAT puts many buyers behind one address).
    public var maxConnectionsPerAddress = 256
    /// `HTTP_HEADER_TIMEOUT_SECONDS` (10): time to send a request's head, from the connection's start or
    /// the previous response.
    public var headerTimeoutSeconds = 10
    /// `HTTP_BODY_TIMEOUT_SECONDS` (10): time to send a request's body once its head has arrived.
    public var bodyTimeoutSeconds = 10
    /// `HTTP_IDLE_TIMEOUT_SECONDS` (30): libmicrohttpd's own timeout: a connection with no traffic at all.
    public var idleTimeoutSeconds = 30

    public init() {}
}

/// An IPv4 or IPv6 address, or a CIDR range of them (`10.0.0.0/8`, `::1`, `fd00::/8`). IPv4 is kept as
/// IPv4-mapped IPv6, so `127.0.0.1` and `::ffff:127.0.0.1` are the same address.
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    private let bytes: [UInt8]
    private let prefixLength: Int

    public init?(_ text: String) {
        let trimmed = text.trimmingWhitespace()
        let parts = trimmed.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let bytes = Self.address(first) else { return nil }
        let isV4 = !first.contains(":")
        let maxPrefix = isV4 ? 32 : 128
        var prefix = maxPrefix
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...maxPrefix).contains(parsed) else { return nil }
            prefix = parsed
        }
        self.text = trimmed
        self.bytes = bytes
        self.prefixLength = isV4 ? prefix + 96 : prefix
    }

    /// Whether the address `text` (IPv4 or IPv6) is in the range; false for anything else.
    public func contains(_ text: String) -> Bool {
        guard let other = Self.address(text) else { return false }
        var remaining = prefixLength
        for index in 0..<16 {
            if remaining <= 0 { return true }
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if bytes[index] & mask != other[index] & mask { return false }
            remaining -= 8
        }
        return true
    }

    public var description: String { text }

    /// 16 bytes (IPv4 mapped into IPv6), or nil when `text` is not an address.
    public static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var result = Substring(self)
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        while let last = result.last, last.isWhitespace { result = result.dropLast() }
        return String(result)
    }
}
