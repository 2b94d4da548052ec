import Foundation

/// Which pages may open a WebSocket to the gateway: the origins of `CORS_ORIGIN` (`*`: any) and the
/// facade's own origin (`WS_FACADE_ORIGIN`, by default `http://localhost:PORT` and `http://127.0.0.1:PORT`),
/// for the page it serves (INTERFACE.md's configuration table).
///
/// Browsers always send `Origin` on a WebSocket upgrade, and a page cannot suppress or forge it; that is
/// what makes the check worth having (it stops another site's page from using its visitors' browsers
/// against the gateway, RFC 6455 section 10.2). A request **without** `Origin` therefore comes from a
/// non-browser client (a script, a native app, a load balancer's probe), which could send any `Origin`
/// it liked: it is let through, and the connection limits bound what it can do (decision 0017).
/// `Origin: null` (a sandboxed frame, a `file:` page) is a browser hiding where it comes from: refused
/// unless `*` is configured. An `Origin` that is not `http(s)://...` is no web page's (swift-nio's
/// WebSocket client, for one, sends `ws://host`): let through like a missing one.
struct OriginPolicy: Sendable, Equatable {
    let allowsAny: Bool
    let allowed: Set<String>

    init(origins: [String]) {
        allowsAny = origins.contains("*")
        allowed = Set(origins.filter { $0 != "*" }.compactMap(Self.normalize))
    }

    /// Whether an upgrade with this `Origin` header (nil: none sent) may proceed.
    func allows(_ origin: String?) -> Bool {
        guard let origin else { return true }
        if allowsAny { return true }
        guard let normalized = Self.normalize(origin) else {
            let scheme = origin.prefix { $0 != ":" }.lowercased()
            let isWebPage = scheme == "http" || scheme == "https" || scheme == "null" || !origin.contains("://")
            return !isWebPage
        }
        return allowed.contains(normalized)
    }

    /// `scheme://host[:port]` as a browser serializes an origin: scheme and host in lower case, the
    /// scheme's default port left out, no path. nil for anything else (`null` included).
    static func normalize(_ origin: String) -> String? {
        var text = origin.trimmingCharacters(in: .whitespaces)
        if text.hasSuffix("/") { text.removeLast() }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host?.lowercased(), !host.isEmpty,
            components.path.isEmpty, components.query == nil, components.user == nil
        else { return nil }
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        let defaultPort = scheme == "http" ? 80 : 443
        guard let port = components.port, port != defaultPort else { return "\(scheme)://\(bracketed)" }
        return "\(scheme)://\(bracketed):\(port)"
    }
}
