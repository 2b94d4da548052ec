import Contracts
import Foundation
import JWTKit
import Logging
import ServiceSupport
import TestSupport
import Testing

@testable import HTTPFacade

/// The pure parts of authentication: credentials, challenges, claim rules (with a clock of the test's
/// choosing), signature and algorithm checks, and who may name which `userId`.
@Suite("Authentication: tokens, scopes, challenges")
struct AuthUnitTests {
    static let secret = "unit-test-secret-0123456789abcdef0123456789"
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func verifier(issuer: String? = nil, audience: String? = nil) async -> TokenVerifier {
        TokenVerifier(
            algorithm: await TokenKeys.hs256(secret: secret),
            rules: ClaimRules(issuer: issuer, audience: audience)
        )
    }

    static func claims(_ extra: [String: Any] = [:], exp: Double? = 1_800_000_600) -> [String: Any] {
        var claims: [String: Any] = ["sub": "user_456"]
        if let exp { claims["exp"] = exp }
        return claims.merging(extra) { _, new in new }
    }

    // MARK: Credentials and challenges

    @Test("Authorization: Bearer is read case-insensitively; other schemes count as no credentials")
    func credentials() {
        #expect(BearerCredentials(authorization: nil) == .none)
        #expect(BearerCredentials(authorization: "Basic dXNlcjpwYXNz") == .none)
        #expect(BearerCredentials(authorization: "Bearer abc.def.ghi") == .token("abc.def.ghi"))
        #expect(BearerCredentials(authorization: "bearer  abc.def.ghi ") == .token("abc.def.ghi"))
        #expect(BearerCredentials(authorization: "Bearer") == .malformed)
        #expect(BearerCredentials(authorization: "Bearer a b") == .malformed)
        #expect(BearerCredentials(authorization: "Bearer a\"b") == .malformed)
    }

    @Test("WWW-Authenticate follows RFC 6750: no error code without a token, quoted strings escaped")
    func challenges() {
        #expect(BearerChallenge.missing == "Bearer")
        #expect(
            BearerChallenge.invalidToken("The token has expired")
                == #"Bearer error="invalid_token", error_description="The token has expired""#
        )
        #expect(
            BearerChallenge.insufficientScope("inventory:admin")
                == #"Bearer error="insufficient_scope", scope="inventory:admin""#
        )
        #expect(BearerChallenge.quoted("a\"b\\c\nd") == #"a\"b\\cd"#)
        let missing = AccessRefusal.unauthenticated(.none)
        #expect(missing.status == 401 && missing.headers.map(\.1) == ["Bearer"])
        let bad = AccessRefusal.unauthenticated(.token("x"), problem: .expired)
        #expect(bad.status == 401 && bad.headers.first?.1.hasPrefix(#"Bearer error="invalid_token""#) == true)
        let scope = AccessRefusal.insufficientScope(Scope.purchase)
        #expect(scope.status == 403)
        #expect(String(decoding: scope.body, as: UTF8.self).contains(#""code":"FORBIDDEN""#))
    }

    // MARK: Claims, with an injected clock

    @Test("exp is required and checked with 30 s of leeway")
    func expiry() {
        let rules = ClaimRules()
        let now = Self.now.timeIntervalSince1970
        #expect(rules.check(TokenClaims(sub: "u", exp: nil), now: Self.now) == .failure(.missingExpiry))
        #expect(
            rules.check(TokenClaims(sub: "u", exp: now - 29), now: Self.now)
                == .success(Caller(subject: "u", scopes: []))
        )
        #expect(rules.check(TokenClaims(sub: "u", exp: now - 30), now: Self.now) == .failure(.expired))
        #expect(rules.check(TokenClaims(sub: "u", exp: now - 3600), now: Self.now) == .failure(.expired))
    }

    @Test("nbf is checked when present, with leeway")
    func notBefore() {
        let rules = ClaimRules()
        let now = Self.now.timeIntervalSince1970
        #expect(rules.check(TokenClaims(sub: "u", exp: now + 60, nbf: now + 30), now: Self.now).isSuccess)
        #expect(
            rules.check(TokenClaims(sub: "u", exp: now + 600, nbf: now + 31), now: Self.now) == .failure(.notYetValid)
        )
    }

    @Test("iss and aud are checked only when configured; aud may be a list")
    func issuerAndAudience() {
        let exp = Self.now.timeIntervalSince1970 + 60
        #expect(ClaimRules().check(TokenClaims(sub: "u", exp: exp, iss: "x", aud: ["y"]), now: Self.now).isSuccess)
        let rules = ClaimRules(issuer: "https://issuer", audience: "seat-inventory")
        #expect(
            rules.check(
                TokenClaims(sub: "u", exp: exp, iss: "https://issuer", aud: ["other", "seat-inventory"]),
                now: Self.now
            )
            .isSuccess
        )
        #expect(
            rules.check(TokenClaims(sub: "u", exp: exp, aud: ["seat-inventory"]), now: Self.now)
                == .failure(.wrongIssuer)
        )
        #expect(
            rules.check(TokenClaims(sub: "u", exp: exp, iss: "https://issuer", aud: ["other"]), now: Self.now)
                == .failure(.wrongAudience)
        )
        #expect(
            rules.check(TokenClaims(sub: "u", exp: exp, iss: "https://issuer"), now: Self.now)
                == .failure(.wrongAudience)
        )
    }

    @Test("sub must be an identifier; scope is split on spaces")
    func subjectAndScopes() {
        let exp = Self.now.timeIntervalSince1970 + 60
        #expect(ClaimRules().check(TokenClaims(exp: exp), now: Self.now) == .failure(.badSubject))
        #expect(ClaimRules().check(TokenClaims(sub: "a b", exp: exp), now: Self.now) == .failure(.badSubject))
        let caller = try? ClaimRules().check(
            TokenClaims(sub: "orders", exp: exp, scope: "inventory:purchase  openid"),
            now: Self.now
        ).get()
        #expect(caller == Caller(subject: "orders", scopes: ["inventory:purchase", "openid"]))
        #expect(caller?.has(Scope.purchase) == true && caller?.isAdmin == false)
    }

    // MARK: Signatures and algorithms

    @Test("a good HS256 token verifies; another key, alg none, another alg or garbage do not")
    func signatures() async throws {
        let verifier = await Self.verifier()
        let minter = await TokenMinter.hs256(secret: Self.secret)
        let good = try minter.sign(
            header: ["alg": "HS256", "typ": "JWT"],
            claims: Self.claims(["scope": "inventory:admin"])
        )
        #expect(verifier.verify(good, now: Self.now) == .success(Caller(subject: "user_456", scopes: [Scope.admin])))

        let other = await TokenMinter.hs256(secret: "another-secret-0123456789abcdef0123456789")
        let forged = try other.sign(header: ["alg": "HS256"], claims: Self.claims())
        #expect(verifier.verify(forged, now: Self.now) == .failure(.badSignature))

        let unsigned =
            try TokenMinter.encodedSegment(["alg": "none", "typ": "JWT"]) + "."
            + TokenMinter.encodedSegment(Self.claims()) + "."
        #expect(verifier.verify(unsigned, now: Self.now) == .failure(.algorithmNotAccepted))
        // The right signature under a header that claims another algorithm is still refused.
        let relabelled = try minter.sign(header: ["alg": "HS384"], claims: Self.claims())
        #expect(verifier.verify(relabelled, now: Self.now) == .failure(.algorithmNotAccepted))

        for garbage in ["", "abc", "a.b", "a.b.c.d", "!!!.???.***", good + "x"] {
            #expect(verifier.verify(garbage, now: Self.now).isFailure, "\(garbage)")
        }
        let expired = try minter.sign(header: ["alg": "HS256"], claims: Self.claims(exp: 1_799_999_000))
        #expect(verifier.verify(expired, now: Self.now) == .failure(.expired))
    }

    @Test("RS256 and ES256 tokens verify against JWT_PUBLIC_KEY_FILE; a token of the other kind does not")
    func publicKeys() async throws {
        let directory = NSTemporaryDirectory() + "auth-keys-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (name, generate) in [
            ("rsa", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
            ("ec", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        ] {
            try openssl(generate + ["-out", "\(directory)/\(name).pem"])
            try openssl(["pkey", "-in", "\(directory)/\(name).pem", "-pubout", "-out", "\(directory)/\(name).pub"])
        }
        let rsaPrivate = try Insecure.RSA.PrivateKey(
            pem: String(contentsOfFile: "\(directory)/rsa.pem", encoding: .utf8)
        )
        let ecPrivate = try ES256PrivateKey(pem: String(contentsOfFile: "\(directory)/ec.pem", encoding: .utf8))
        let rsaMinter = TokenMinter(
            algorithm: try await JWTKeyCollection().add(rsa: rsaPrivate, digestAlgorithm: .sha256).getKey()
        )
        let ecMinter = TokenMinter(algorithm: try await JWTKeyCollection().add(ecdsa: ecPrivate).getKey())

        let rsa = try await TokenVerifier.make(settings: AuthSettings(jwtPublicKeyFile: "\(directory)/rsa.pub"))
        let ec = try await TokenVerifier.make(settings: AuthSettings(jwtPublicKeyFile: "\(directory)/ec.pub"))
        #expect(rsa.algorithmName == "RS256" && ec.algorithmName == "ES256")
        let rsaToken = try rsaMinter.sign(header: ["alg": "RS256"], claims: Self.claims())
        let ecToken = try ecMinter.sign(header: ["alg": "ES256"], claims: Self.claims())
        #expect(rsa.verify(rsaToken, now: Self.now).isSuccess)
        #expect(ec.verify(ecToken, now: Self.now).isSuccess)
        #expect(rsa.verify(ecToken, now: Self.now) == .failure(.algorithmNotAccepted))
        #expect(ec.verify(rsaToken, now: Self.now) == .failure(.algorithmNotAccepted))
        // An HS256 token signed with the public key's PEM as the secret (the classic confusion attack).
        let pem = try String(contentsOfFile: "\(directory)/rsa.pub", encoding: .utf8)
        let confused = try await TokenMinter.hs256(secret: pem).sign(header: ["alg": "HS256"], claims: Self.claims())
        #expect(rsa.verify(confused, now: Self.now) == .failure(.algorithmNotAccepted))

        try "not a key".write(toFile: "\(directory)/junk.pub", atomically: true, encoding: .utf8)
        await #expect(throws: ConfigurationError.self) {
            try await TokenVerifier.make(settings: AuthSettings(jwtPublicKeyFile: "\(directory)/junk.pub"))
        }
        await #expect(throws: ConfigurationError.self) {
            try await TokenVerifier.make(settings: AuthSettings(jwtPublicKeyFile: "\(directory)/missing.pub"))
        }
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestFailure("openssl \(arguments) failed") }
    }

    // MARK: Who may do what

    @Test("routes ask for no token, any token or a scope; the facade refuses before the core is asked")
    func requirements() async throws {
        #expect(Route.availability.access == .open && Route.healthz.access == .open && Route.readyz.access == .open)
        #expect(Route.hold.access == .authenticated && Route.release.access == .authenticated)
        #expect(Route.holdGet.access == .authenticated)
        #expect(Route.purchase.access == .scope(Scope.purchase))
        #expect(Route.seatsDefine.access == .scope(Scope.admin))

        let authentication = Authentication.jwt(await Self.verifier())
        let minter = await TokenMinter.hs256(secret: Self.secret)
        let user = try minter.sign(header: ["alg": "HS256"], claims: Self.claims())
        func status(_ route: Route, _ header: String?) -> Int? {
            switch AccessPolicy.authorize(
                route: route,
                authorization: header,
                authentication: authentication,
                now: Self.now
            ) {
            case .success: nil
            case .failure(let denied): denied.answer.status
            }
        }
        #expect(status(.availability, nil) == nil)
        #expect(status(.hold, nil) == 401 && status(.hold, "Bearer \(user)") == nil)
        #expect(status(.purchase, "Bearer \(user)") == 403 && status(.seatsDefine, "Bearer \(user)") == 403)
        #expect(status(.release, "Bearer nope") == 401)
        let open = AccessPolicy.authorize(route: .purchase, authorization: nil, authentication: .disabled)
        #expect((try? open.get()) == .some(nil))
    }

    @Test("a body userId must be the caller's, except for admins and on purchase; it is filled in from sub")
    func identities() throws {
        let user = Caller(subject: "user_456", scopes: [])
        let admin = Caller(subject: "ops", scopes: [Scope.admin])
        let orders = Caller(subject: "orders", scopes: [Scope.purchase])
        func body(_ route: Route, _ caller: Caller, _ json: String) -> Result<[String: JSONValue], ErrorBody> {
            AccessPolicy.identified(route: route, caller: caller, body: Array(json.utf8)).map { bytes in
                guard case .success(.object(let object)) = RequestDecoder.parse(bytes) else { return [:] }
                return object
            }
        }
        #expect(try body(.hold, user, #"{"showtimeId":"s","seatIds":["a"]}"#).get()["userId"] == .string("user_456"))
        #expect(
            try body(.hold, user, #"{"showtimeId":"s","userId":"user_456"}"#).get()["userId"] == .string("user_456")
        )
        #expect(throws: ErrorBody.self) { try body(.hold, user, #"{"showtimeId":"s","userId":"user_789"}"#).get() }
        #expect(try body(.hold, admin, #"{"userId":"user_789"}"#).get()["userId"] == .string("user_789"))
        #expect(try body(.release, user, #"{"holdId":"h"}"#).get()["userId"] == .string("user_456"))
        #expect(throws: ErrorBody.self) { try body(.release, user, #"{"holdId":"h","userId":"x"}"#).get() }
        // An admin releasing any hold leaves userId out (INTERFACE.md: "by an admin caller only").
        #expect(try body(.release, admin, #"{"holdId":"h"}"#).get()["userId"] == nil)
        // Purchase: the purchase-scoped caller names the hold's owner, and must.
        #expect(
            try body(.purchase, orders, #"{"holdId":"h","orderId":"o","userId":"user_456"}"#).get()["userId"]
                == .string("user_456")
        )
        let missing = body(.purchase, orders, #"{"holdId":"h","orderId":"o"}"#)
        #expect((try? missing.get()) == nil)
        if case .failure(let error) = missing { #expect(error.code == .validationFailed) }
        #expect(try body(.purchase, admin, #"{"holdId":"h","orderId":"o"}"#).get()["userId"] == nil)
        // Not JSON, or a userId of the wrong type: left for validation's 400.
        #expect(try body(.hold, user, "{nope").get().isEmpty)
        #expect(try body(.hold, user, #"{"userId":5}"#).get()["userId"] == .number(5))
        #expect(AccessPolicy.holdGetUser(caller: user) == "user_456" && AccessPolicy.holdGetUser(caller: admin) == nil)
        // The splice keeps every other member and stays JSON, whatever the whitespace.
        #expect(try body(.hold, user, " \n{ } ").get() == ["userId": .string("user_456")])
        let spliced = try body(.hold, user, #" { "showtimeId" : "s", "seatIds": ["a", "b"] , "idempotencyKey":"k"}"#)
            .get()
        #expect(
            spliced == [
                "userId": .string("user_456"), "showtimeId": .string("s"),
                "seatIds": .array([.string("a"), .string("b")]),
                "idempotencyKey": .string("k"),
            ]
        )
    }

    // MARK: Configuration

    @Test("AUTH_MODE=jwt without a key stops with a line naming JWT_SECRET; AUTH_MODE=none is warned")
    func configuration() async throws {
        #expect(throws: ConfigurationError.self) { try AuthSettings().requireTokenKey() }
        do {
            try AuthSettings().requireTokenKey()
        } catch {
            #expect(error.description.contains("JWT_SECRET") && !error.description.contains("\n"))
        }
        try AuthSettings(mode: .none).requireTokenKey()
        try AuthSettings(jwtSecret: Self.secret).requireTokenKey()
        #expect(AuthSettings.disabledWarning.contains("AUTH_MODE=none"))

        let loaded = try await ServiceConfiguration.load(
            environment: ["JWT_SECRET": Self.secret, "JWT_AUDIENCE": "a", "JWT_ISSUER": "i", "FACADE_OPS_PORT": "0"],
            directory: "/nonexistent"
        )
        #expect(loaded.auth == AuthSettings(mode: .jwt, jwtSecret: Self.secret, jwtIssuer: "i", jwtAudience: "a"))
        #expect(loaded.facadeOpsPort == 0 && loaded.facadeOpsBindAddress == "127.0.0.1")
        #expect(loaded.logMetadata["JWT_SECRET"] == "***")
        for (name, value) in [
            ("AUTH_MODE", "maybe"), ("JWT_SECRET", "short"), ("FACADE_OPS_BIND", "localhost"),
            ("FACADE_OPS_PORT", "70000"),
        ] {
            await #expect(throws: ConfigurationError.self, "\(name)=\(value)") {
                try await ServiceConfiguration.load(environment: [name: value], directory: "/nonexistent")
            }
        }
        await #expect(throws: ConfigurationError.self) {
            try await ServiceConfiguration.load(
                environment: ["JWT_SECRET": Self.secret, "JWT_PUBLIC_KEY_FILE": "/k.pem"],
                directory: "/nonexistent"
            )
        }
    }

    @Test("http-facade with AUTH_MODE=jwt and no key stops at once with one line naming JWT_SECRET")
    func startWithoutKey() throws {
        #expect(throws: ConfigurationError.self) {
            try Facade(configuration: .defaults, logger: Logger(label: "test"))
        }
        // From an empty directory, so no .env file sets a key.
        let directory = NSTemporaryDirectory() + "auth-nokey-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Products.path("http-facade"))
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var environment = ProcessInfo.processInfo.environment
        for name in ["AUTH_MODE", "JWT_SECRET", "JWT_PUBLIC_KEY_FILE"] { environment[name] = nil }
        environment["PORT"] = "0"
        environment["FACADE_OPS_PORT"] = "0"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 1)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.contains("JWT_SECRET") == true, "\(output)")
    }

    @Test("the operations port answers /metrics and /healthz, nothing else")
    func opsAnswers() {
        #expect(OpsServer.answer(method: "GET", path: "/metrics").status == 200)
        #expect(OpsServer.answer(method: "GET", path: "/healthz").status == 200)
        #expect(OpsServer.answer(method: "POST", path: "/metrics").status == 405)
        #expect(OpsServer.answer(method: "GET", path: "/hold").status == 404)
    }
}

extension Result {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }

    var isFailure: Bool { !isSuccess }
}
