import Testing

@testable import HTTPFacade

@Suite("CORS decisions") struct CORSPolicyTests {
    let policy = CORSPolicy(origins: ["http://localhost:3000", "https://tickets.example.com/"])

    private func value(_ name: String, in headers: [(String, String)]) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    @Test("an allowed origin is echoed, with Vary and the exposed replay header")
    func allowedOrigin() {
        let headers = policy.responseHeaders(origin: "http://localhost:3000")
        #expect(value("Access-Control-Allow-Origin", in: headers) == "http://localhost:3000")
        #expect(value("Vary", in: headers) == "Origin")
        #expect(
            value("Access-Control-Expose-Headers", in: headers)
                == "Idempotent-Replayed, WWW-Authenticate, Retry-After, RateLimit-Policy, RateLimit"
        )
        // A trailing slash in CORS_ORIGIN does not matter: browsers never send one.
        #expect(policy.allowedOrigin("https://tickets.example.com") == "https://tickets.example.com")
    }

    @Test("other origins, and requests without one, get no allow header but still Vary")
    func otherOrigins() {
        for origin in ["http://evil.example", "http://localhost:3001", "", nil] as [String?] {
            let headers = policy.responseHeaders(origin: origin)
            #expect(value("Access-Control-Allow-Origin", in: headers) == nil)
            #expect(value("Vary", in: headers) == "Origin")
        }
    }

    @Test("a preflight from an allowed origin lists methods, headers and max age")
    func preflightAllowed() {
        let headers = policy.preflightHeaders(origin: "http://localhost:3000", route: .hold)
        #expect(value("Access-Control-Allow-Origin", in: headers) == "http://localhost:3000")
        #expect(value("Access-Control-Allow-Methods", in: headers) == "POST, OPTIONS")
        let allowed = value("Access-Control-Allow-Headers", in: headers)?.lowercased() ?? ""
        #expect(
            allowed.contains("content-type") && allowed.contains("idempotency-key")
                && allowed.contains("idempotencykey")
        )
        #expect(value("Access-Control-Max-Age", in: headers) == "600")
        #expect(value("Allow", in: headers) == "POST, OPTIONS")
    }

    @Test("a preflight from another origin gets no Access-Control header")
    func preflightRefused() {
        let headers = policy.preflightHeaders(origin: "http://evil.example", route: .seatsDefine)
        #expect(headers.allSatisfy { !$0.0.hasPrefix("Access-Control-") })
        #expect(value("Allow", in: headers) == "PUT, OPTIONS")
    }

    @Test("* allows any origin")
    func wildcard() {
        let any = CORSPolicy(origins: ["*"])
        #expect(any.allowedOrigin("http://whatever.example:8080") == "http://whatever.example:8080")
        #expect(any.allowedOrigin(nil) == nil)
    }
}
