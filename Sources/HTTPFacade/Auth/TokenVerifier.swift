import Contracts
import Foundation
import JWTKit
import ServiceSupport

/// The OAuth 2 scopes of INTERFACE.md ("Who may do what").
public enum Scope {
    /// Convert holds (the Orders or payment side).
    public static let purchase = "inventory:purchase"
    /// Seat maps and any user's holds.
    public static let admin = "inventory:admin"
}

/// A caller proven by a verified token: `sub` and the scopes of its `scope` claim.
public struct Caller: Sendable, Hashable {
    public var subject: String
    public var scopes: Set<String>

    public init(subject: String, scopes: Set<String>) {
        self.subject = subject
        self.scopes = scopes
    }

    public var isAdmin: Bool { scopes.contains(Scope.admin) }

    public func has(_ scope: String) -> Bool { scopes.contains(scope) }
}

/// Why a token was refused: 401 UNAUTHENTICATED with `error="invalid_token"`. `description` is fixed
/// text (it goes into `error_description`, so it never quotes the token).
public enum TokenProblem: Error, Sendable, Hashable, CustomStringConvertible {
    case malformed
    case algorithmNotAccepted
    case badSignature
    case missingExpiry
    case expired
    case notYetValid
    case wrongIssuer
    case wrongAudience
    case badSubject

    public var description: String {
        switch self {
        case .malformed: "The token is not a well-formed JWT"
        case .algorithmNotAccepted: "The token's alg is not the one this service accepts"
        case .badSignature: "The token's signature does not verify"
        case .missingExpiry: "The token has no exp claim"
        case .expired: "The token has expired"
        case .notYetValid: "The token is not valid yet (nbf)"
        case .wrongIssuer: "The token's iss is not the expected issuer"
        case .wrongAudience: "The token's aud does not name this service"
        case .badSubject: "The token's sub is missing or not a valid user id"
        }
    }
}

/// The claims the facade reads. Numeric dates may be fractional; `aud` is a string or an array.
struct TokenClaims: JWTPayload, Equatable {
    var sub: String?
    var exp: Double?
    var nbf: Double?
    var iss: String?
    var aud: [String]?
    var scope: String?

    init(
        sub: String? = nil,
        exp: Double? = nil,
        nbf: Double? = nil,
        iss: String? = nil,
        aud: [String]? = nil,
        scope: String? = nil
    ) {
        self.sub = sub
        self.exp = exp
        self.nbf = nbf
        self.iss = iss
        self.aud = aud
        self.scope = scope
    }

    private enum CodingKeys: String, CodingKey { case sub, exp, nbf, iss, aud, scope }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sub = try container.decodeIfPresent(String.self, forKey: .sub)
        exp = try container.decodeIfPresent(Double.self, forKey: .exp)
        nbf = try container.decodeIfPresent(Double.self, forKey: .nbf)
        iss = try container.decodeIfPresent(String.self, forKey: .iss)
        if let single = try? container.decodeIfPresent(String.self, forKey: .aud) {
            aud = [single]
        } else {
            aud = try container.decodeIfPresent([String].self, forKey: .aud)
        }
        scope = try container.decodeIfPresent(String.self, forKey: .scope)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(sub, forKey: .sub)
        try container.encodeIfPresent(exp, forKey: .exp)
        try container.encodeIfPresent(nbf, forKey: .nbf)
        try container.encodeIfPresent(iss, forKey: .iss)
        if let aud { try aud.count == 1 ? container.encode(aud[0], forKey: .aud) : container.encode(aud, forKey: .aud) }
        try container.encodeIfPresent(scope, forKey: .scope)
    }

    /// Unused: the facade checks claims synchronously with ``ClaimRules`` (jwt-kit's own checks are async).
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The claim checks, pure (the clock is an argument): `exp` required, `nbf` when present, `iss` and
/// `aud` when configured, each date with `leeway`; `sub` a valid identifier.
struct ClaimRules: Sendable, Hashable {
    var issuer: String?
    var audience: String?
    var leewaySeconds: Double = 30

    func check(_ claims: TokenClaims, now: Date) -> Result<Caller, TokenProblem> {
        let seconds = now.timeIntervalSince1970
        guard let exp = claims.exp, exp.isFinite else { return .failure(.missingExpiry) }
        guard seconds < exp + leewaySeconds else { return .failure(.expired) }
        if let nbf = claims.nbf {
            guard nbf.isFinite, seconds + leewaySeconds >= nbf else { return .failure(.notYetValid) }
        }
        if let issuer, claims.iss != issuer { return .failure(.wrongIssuer) }
        if let audience, !(claims.aud ?? []).contains(audience) { return .failure(.wrongAudience) }
        guard let sub = claims.sub, Identifier.isValid(sub) else { return .failure(.badSubject) }
        let scopes = (claims.scope ?? "").split(separator: " ").map(String.init)
        return .success(Caller(subject: sub, scopes: Set(scopes)))
    }
}

/// Verifies bearer tokens synchronously, on the thread that asks (a libmicrohttpd thread): jwt-kit's
/// parser and its signature algorithm (HS256, RS256 or ES256), then ``ClaimRules``.
///
/// jwt-kit's `JWTKeyCollection.verify` is async (an actor); awaiting it from a libmicrohttpd thread
/// would mean blocking that thread on the cooperative pool. Its pieces are not async: the key
/// collection is asked once, at start, for its `JWTAlgorithm`, whose `verify(_:signs:)` is plain code.
public final class TokenVerifier: Sendable {
    private let algorithm: any JWTAlgorithm
    let rules: ClaimRules
    private let parser = DefaultJWTParser()

    /// The JWS `alg` accepted; any other, `none` above all, is refused before the signature is looked at.
    public var algorithmName: String { algorithm.name }

    init(algorithm: any JWTAlgorithm, rules: ClaimRules) {
        self.algorithm = algorithm
        self.rules = rules
    }

    /// The verifier of `settings`: its key (`JWT_SECRET`, or the PEM in `JWT_PUBLIC_KEY_FILE`), issuer
    /// and audience. A key that cannot be used throws, naming the variable.
    public static func make(settings: AuthSettings) async throws(ConfigurationError) -> TokenVerifier {
        TokenVerifier(
            algorithm: try await TokenKeys.algorithm(for: settings),
            rules: ClaimRules(issuer: settings.jwtIssuer, audience: settings.jwtAudience)
        )
    }

    /// ``make(settings:)`` for a thread outside Swift concurrency (the facade's start).
    public static func makeBlocking(settings: AuthSettings) throws(ConfigurationError) -> TokenVerifier {
        try TokenKeys.blocking { () async throws(ConfigurationError) in try await make(settings: settings) }
    }

    /// The caller `token` proves, or why it does not.
    public func verify(_ token: String, now: Date = Date()) -> Result<Caller, TokenProblem> {
        let bytes = Array(token.utf8)
        // Compact JWS: three base64url segments; what does not split so is malformed.
        guard let firstDot = bytes.firstIndex(of: UInt8(ascii: ".")),
            let secondDot = bytes[(firstDot + 1)...].firstIndex(of: UInt8(ascii: "."))
        else { return .failure(.malformed) }
        let header: JWTHeader
        let claims: TokenClaims
        let signature: Data
        do {
            (header, claims, signature) = try parser.parse(bytes, as: TokenClaims.self)
        } catch {
            return .failure(.malformed)
        }
        guard header.alg == algorithm.name else { return .failure(.algorithmNotAccepted) }
        do {
            guard try algorithm.verify(signature, signs: bytes[..<secondDot]) else { return .failure(.badSignature) }
        } catch {
            return .failure(.badSignature)
        }
        return rules.check(claims, now: now)
    }
}

/// Turns configuration into jwt-kit algorithms.
public enum TokenKeys {
    /// HS256 with `JWT_SECRET`, else RS256 or ES256 with the PEM public key in `JWT_PUBLIC_KEY_FILE`.
    public static func algorithm(for settings: AuthSettings) async throws(ConfigurationError) -> any JWTAlgorithm {
        if let secret = settings.jwtSecret { return await hs256(secret: secret) }
        guard let path = settings.jwtPublicKeyFile else {
            try settings.requireTokenKey()
            throw ConfigurationError(variable: "JWT_SECRET", source: "configuration", message: "no key")
        }
        let pem: String
        do {
            pem = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(variable: "JWT_PUBLIC_KEY_FILE", source: path, message: "cannot read the file")
        }
        let keys = JWTKeyCollection()
        if let rsa = try? Insecure.RSA.PublicKey(pem: pem) {
            await keys.add(rsa: rsa, digestAlgorithm: .sha256)
        } else if let ec = try? ES256PublicKey(pem: pem) {
            await keys.add(ecdsa: ec)
        } else {
            throw ConfigurationError(
                variable: "JWT_PUBLIC_KEY_FILE",
                source: path,
                message: "expected a PEM public key: RSA of 2048 bits or more (RS256) or P-256 (ES256)"
            )
        }
        do {
            return try await keys.getKey()
        } catch {
            throw ConfigurationError(variable: "JWT_PUBLIC_KEY_FILE", source: path, message: "unusable key: \(error)")
        }
    }

    /// HS256 with `secret` (its UTF-8 bytes are the key).
    public static func hs256(secret: String) async -> any JWTAlgorithm {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        // A collection with one default key always has it.
        return try! await keys.getKey()
    }

    /// Runs `body` on a task and waits for it; only from a thread outside Swift concurrency.
    static func blocking<T: Sendable>(
        _ body: @escaping @Sendable () async throws(ConfigurationError) -> T
    ) throws(ConfigurationError) -> T {
        let result = BlockingResult<Result<T, ConfigurationError>>()
        Task.detached {
            do throws(ConfigurationError) {
                result.set(.success(try await body()))
            } catch {
                result.set(.failure(error))
            }
        }
        return try result.wait().get()
    }
}
