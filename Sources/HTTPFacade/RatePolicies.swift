import Contracts
import ServiceSupport
import Synchronization

/// Who a request comes from, as INTERFACE.md defines the client address: the TCP peer, or, when the peer
/// is one of `TRUSTED_PROXIES`, the nearest `X-Forwarded-For` entry (from the right) that is not itself a
/// trusted proxy.
enum ClientAddress {
    static func resolve(peer: String?, forwardedFor: String?, trusted: [AddressRange]) -> String {
        let peer = peer ?? "unknown"
        guard !trusted.isEmpty, isTrusted(peer, trusted), let forwardedFor else { return peer }
        let entries = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        var candidate = peer
        for entry in entries.reversed() where !entry.isEmpty {
            candidate = String(entry.prefix(64))
            if !isTrusted(candidate, trusted) { return candidate }
        }
        // Every hop is trusted: the leftmost is as close to the client as the chain goes.
        return candidate
    }

    private static func isTrusted(_ address: String, _ trusted: [AddressRange]) -> Bool {
        trusted.contains { $0.contains(address) }
    }
}

/// Which budgets a route draws on (writes and reads apart; per user when the caller is authenticated,
/// always per client address), and the 429 answer with `Retry-After` and the
/// draft-ietf-httpapi-ratelimit-headers-10 fields.
struct RatePolicies: Sendable {
    var userWrites: RatePolicy
    var addressWrites: RatePolicy
    var userReads: RatePolicy
    var addressReads: RatePolicy
    /// Prepended to every Redis key (tests isolate themselves with it).
    var keyPrefix: String

    init(settings: EdgeSettings, keyPrefix: String = "inventory:ratelimit:") {
        let window = settings.rateLimitWindowSeconds
        userWrites = RatePolicy(name: "user-write", quota: settings.userWrites, windowSeconds: window)
        addressWrites = RatePolicy(name: "address-write", quota: settings.addressWrites, windowSeconds: window)
        userReads = RatePolicy(name: "user-read", quota: settings.userReads, windowSeconds: window)
        addressReads = RatePolicy(name: "address-read", quota: settings.addressReads, windowSeconds: window)
        self.keyPrefix = keyPrefix
    }

    /// nil for routes without a budget (`/healthz`, `/readyz`).
    func check(route: Route, user: String?, address: String) -> RateCheck? {
        let (userPolicy, addressPolicy): (RatePolicy, RatePolicy)
        switch route {
        case .hold, .release, .purchase, .seatsDefine, .holdExtend:
            (userPolicy, addressPolicy) = (userWrites, addressWrites)
        case .availability, .holdGet, .seatHistory: (userPolicy, addressPolicy) = (userReads, addressReads)
        case .healthz, .readyz: return nil
        }
        var items: [(key: String, policy: RatePolicy)] = [
            (keyPrefix + addressPolicy.name + ":" + address, addressPolicy)
        ]
        if let user {
            items.append((keyPrefix + userPolicy.name + ":" + user, userPolicy))
        }
        return RateCheck(items: items)
    }

    /// 429 RATE_LIMITED: `Retry-After`, `RateLimit-Policy: "name";q=..;w=..`, `RateLimit: "name";r=0;t=..`.
    static func limitedAnswer(policy: RatePolicy, retryAfterSeconds: Int, resetSeconds: Int) -> RESTAnswer {
        var answer = RESTAnswer.error(
            .rateLimited,
            "Too many requests: \(policy.quota) per \(policy.windowSeconds) s (\(policy.name)); retry after \(retryAfterSeconds) s",
            details: [
                "policy": .string(policy.name),
                "limit": .number(Double(policy.quota)),
                "windowSeconds": .number(Double(policy.windowSeconds)),
                "retryAfterSeconds": .number(Double(retryAfterSeconds)),
            ]
        )
        answer.headers += [
            ("Retry-After", "\(retryAfterSeconds)"),
            ("RateLimit-Policy", "\"\(policy.name)\";q=\(policy.quota);w=\(policy.windowSeconds)"),
            ("RateLimit", "\"\(policy.name)\";r=0;t=\(resetSeconds)"),
        ]
        return answer
    }
}

/// Requests in flight per client address, for clients behind a trusted proxy.
final class ProxiedClients: Sendable {
    static let policyName = "address-concurrency"
    private let inFlight = Mutex<[String: Int]>([:])

    /// Counts one more request of `address`; false (and nothing counted) when it has `limit` already.
    func enter(_ address: String, limit: Int) -> Bool {
        inFlight.withLock { counts in
            let current = counts[address, default: 0]
            guard current < limit else { return false }
            counts[address] = current + 1
            return true
        }
    }

    func leave(_ address: String) {
        inFlight.withLock { counts in
            let remaining = counts[address, default: 1] - 1
            counts[address] = remaining > 0 ? remaining : nil
        }
    }

    /// 429 RATE_LIMITED, the draft-10 fields with the quota unit `concurrent-requests`.
    static func limitedAnswer(limit: Int) -> RESTAnswer {
        var answer = RESTAnswer.error(
            .rateLimited,
            "Too many requests in flight from this address: at most \(limit) at once",
            details: ["policy": .string(policyName), "limit": .number(Double(limit)), "retryAfterSeconds": 1]
        )
        answer.headers += [
            ("Retry-After", "1"),
            ("RateLimit-Policy", "\"\(policyName)\";q=\(limit);qu=\"concurrent-requests\""),
            ("RateLimit", "\"\(policyName)\";r=0"),
        ]
        return answer
    }
}
