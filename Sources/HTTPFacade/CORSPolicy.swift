/// Which browsers' pages may call the facade: the origins of `CORS_ORIGIN` (`*` allows any).
///
/// Every response carries `Vary: Origin`, because whether it carries an allow header depends on it. A
/// request from an origin not on the list gets no `Access-Control-*` header at all; the browser then
/// refuses the page the answer, which is the point.
struct CORSPolicy: Sendable, Equatable {
    let allowedOrigins: Set<String>
    let allowsAny: Bool

    /// Headers a page may send: the bearer token, the JSON content type and both spellings of the
    /// idempotency key.
    static let allowedHeaders = "Authorization, Content-Type, Idempotency-Key, idempotencyKey"
    /// Response headers a page may read besides the CORS-safelisted ones.
    static let exposedHeaders = "Idempotent-Replayed, WWW-Authenticate, Retry-After, RateLimit-Policy, RateLimit"
    /// How long a browser may cache a preflight answer, in seconds.
    static let maxAgeSeconds = 600

    init(origins: [String]) {
        allowsAny = origins.contains("*")
        // Origins compare as the browser sends them: scheme://host[:port], no trailing slash.
        allowedOrigins = Set(origins.filter { $0 != "*" }.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 })
    }

    /// The origin to echo in `Access-Control-Allow-Origin`, or nil when `origin` is not allowed.
    func allowedOrigin(_ origin: String?) -> String? {
        guard let origin, !origin.isEmpty else { return nil }
        return allowsAny || allowedOrigins.contains(origin) ? origin : nil
    }

    /// The headers an ordinary response adds for a request with `origin`.
    func responseHeaders(origin: String?) -> [(String, String)] {
        guard let allowed = allowedOrigin(origin) else { return [("Vary", "Origin")] }
        return [
            ("Access-Control-Allow-Origin", allowed),
            ("Vary", "Origin"),
            ("Access-Control-Expose-Headers", Self.exposedHeaders),
        ]
    }

    /// The headers of a preflight answer (204) on `route`.
    func preflightHeaders(origin: String?, route: Route) -> [(String, String)] {
        var headers: [(String, String)] = [("Allow", route.allow), ("Vary", "Origin")]
        guard let allowed = allowedOrigin(origin) else { return headers }
        headers += [
            ("Access-Control-Allow-Origin", allowed),
            ("Access-Control-Allow-Methods", route.allow),
            ("Access-Control-Allow-Headers", Self.allowedHeaders),
            ("Access-Control-Max-Age", "\(Self.maxAgeSeconds)"),
        ]
        return headers
    }
}
