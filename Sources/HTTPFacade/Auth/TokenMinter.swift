import Foundation
import JWTKit
import ServiceSupport

/// Makes signed tokens: the development tokens of `scripts/run.sh` and `http-facade token`, the
/// benchmark's per-user tokens, and the tests' good and bad tokens. Synchronous (jwt-kit's algorithm
/// signs directly), so a load generator mints without the cooperative pool.
public struct TokenMinter: Sendable {
    public let algorithm: any JWTAlgorithm

    public init(algorithm: any JWTAlgorithm) {
        self.algorithm = algorithm
    }

    /// A token for `subject` with `scopes`, valid from `now` for `ttlSeconds` (`iat`, `exp`), with `iss`
    /// and `aud` when given.
    public func mint(
        subject: String,
        scopes: [String] = [],
        ttlSeconds: Int = 3600,
        issuer: String? = nil,
        audience: String? = nil,
        now: Date = Date()
    ) throws -> String {
        var claims: [String: Any] = [
            "sub": subject,
            "iat": Int(now.timeIntervalSince1970),
            "exp": Int(now.timeIntervalSince1970) + ttlSeconds,
        ]
        if !scopes.isEmpty { claims["scope"] = scopes.joined(separator: " ") }
        if let issuer { claims["iss"] = issuer }
        if let audience { claims["aud"] = audience }
        return try sign(header: ["alg": algorithm.name, "typ": "JWT"], claims: claims)
    }

    /// A compact JWS of any header and claims, signed with this minter's key (tests use it for tokens
    /// the facade must refuse: another `alg`, no `exp`, odd claims).
    public func sign(header: [String: Any], claims: [String: Any]) throws -> String {
        let input = try Self.encodedSegment(header) + "." + Self.encodedSegment(claims)
        let signature = try algorithm.sign(Array(input.utf8))
        return input + "." + Self.base64URL(signature)
    }

    /// A JSON object, base64url-encoded without padding (RFC 7515, 2).
    public static func encodedSegment(_ object: [String: Any]) throws -> String {
        base64URL(Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])))
    }

    public static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

extension TokenMinter {
    /// An HS256 minter with `secret`.
    public static func hs256(secret: String) async -> TokenMinter {
        TokenMinter(algorithm: await TokenKeys.hs256(secret: secret))
    }

    /// ``hs256(secret:)`` for a thread outside Swift concurrency (command lines, load generators).
    public static func hs256Blocking(secret: String) -> TokenMinter {
        let result = BlockingResult<TokenMinter>()
        Task.detached { result.set(await hs256(secret: secret)) }
        return result.wait()
    }
}
