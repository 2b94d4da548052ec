import Contracts
import Foundation

/// How the facade knows who calls (`AUTH_MODE`).
enum Authentication: Sendable {
    /// `AUTH_MODE=none`: the seed's behaviour, `userId` from the body.
    case disabled
    /// `AUTH_MODE=jwt`: `Authorization: Bearer` verified by `TokenVerifier`.
    case jwt(TokenVerifier)
}

/// What a route asks of its caller (INTERFACE.md, "Who may do what").
enum AccessRequirement: Sendable, Hashable {
    /// No token needed.
    case open
    /// Any verified token.
    case authenticated
    /// A verified token with this scope.
    case scope(String)
}

extension Route {
    var access: AccessRequirement {
        switch self {
        case .hold, .release, .holdGet, .holdExtend: .authenticated
        case .purchase: .scope(Scope.purchase)
        case .seatsDefine, .seatHistory: .scope(Scope.admin)
        case .availability, .healthz, .readyz: .open
        }
    }
}

/// What `Authorization` carries, per RFC 6750 2.1 (the scheme is case-insensitive).
enum BearerCredentials: Sendable, Hashable {
    /// No `Authorization`, or another scheme (RFC 6750 3.1: then no error code).
    case none
    case token(String)
    /// `Bearer` without a token68 value.
    case malformed

    /// token68 (RFC 9110, 11.2): ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", and "=" padding.
    static func isToken68(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"),
            UInt8(ascii: "/"), UInt8(ascii: "="):
            true
        default: false
        }
    }

    init(authorization: String?) {
        guard let authorization else {
            self = .none
            return
        }
        let trimmed = authorization.trimmingCharacters(in: .whitespaces)
        let parts = trimmed.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard let scheme = parts.first, scheme.lowercased() == "bearer" else {
            self = .none
            return
        }
        guard parts.count == 2 else {
            self = .malformed
            return
        }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, token.utf8.allSatisfy(Self.isToken68) else {
            self = .malformed
            return
        }
        self = .token(token)
    }
}

/// The `WWW-Authenticate` values of RFC 6750, 3.
enum BearerChallenge {
    /// No credentials: the scheme alone.
    static let missing = "Bearer"

    static func invalidToken(_ description: String) -> String {
        #"Bearer error="invalid_token", error_description="\#(quoted(description))""#
    }

    static func insufficientScope(_ scope: String) -> String {
        #"Bearer error="insufficient_scope", scope="\#(quoted(scope))""#
    }

    /// A quoted-string's content: `"` and `\` escaped, control characters dropped.
    static func quoted(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars where scalar.value >= 0x20 && scalar.value != 0x7F {
            if scalar == "\"" || scalar == "\\" { out.append("\\") }
            out.unicodeScalars.append(scalar)
        }
        return out
    }
}

/// The refusals of authentication and authorization, as REST answers.
enum AccessRefusal {
    static func unauthenticated(_ credentials: BearerCredentials, problem: TokenProblem? = nil) -> RESTAnswer {
        switch (credentials, problem) {
        case (.none, _):
            return .error(
                ErrorBody(code: .unauthenticated, message: "This route needs Authorization: Bearer <token>"),
                headers: [("WWW-Authenticate", BearerChallenge.missing)]
            )
        case (_, let problem):
            let description = problem?.description ?? "The Authorization header is not Bearer <token>"
            return .error(
                ErrorBody(code: .unauthenticated, message: description),
                headers: [("WWW-Authenticate", BearerChallenge.invalidToken(description))]
            )
        }
    }

    static func insufficientScope(_ scope: String) -> RESTAnswer {
        .error(
            ErrorBody(
                code: .forbidden,
                message: "This route needs the scope \(scope)",
                details: ["scope": .string(scope)]
            ),
            headers: [("WWW-Authenticate", BearerChallenge.insufficientScope(scope))]
        )
    }

    static let otherUser = ErrorBody(
        code: .forbidden,
        message: "userId must be the authenticated user (the token's sub)",
        details: ["field": .string("userId")]
    )
}

/// Authentication and authorization of one request, pure: the verifier's clock is an argument.
enum AccessPolicy {
    /// The verified caller (nil on open routes and with `AUTH_MODE=none`), or the 401 / 403 answer.
    static func authorize(
        route: Route,
        authorization: String?,
        authentication: Authentication,
        now: Date = Date()
    ) -> Result<Caller?, AccessDenied> {
        guard case .jwt(let verifier) = authentication, route.access != .open else { return .success(nil) }
        let credentials = BearerCredentials(authorization: authorization)
        let caller: Caller
        switch credentials {
        case .none, .malformed:
            return .failure(AccessDenied(answer: AccessRefusal.unauthenticated(credentials)))
        case .token(let token):
            switch verifier.verify(token, now: now) {
            case .success(let verified): caller = verified
            case .failure(let problem):
                return .failure(AccessDenied(answer: AccessRefusal.unauthenticated(credentials, problem: problem)))
            }
        }
        if case .scope(let scope) = route.access, !caller.has(scope) {
            return .failure(AccessDenied(answer: AccessRefusal.insufficientScope(scope)))
        }
        return .success(caller)
    }

    /// The body with the caller's identity put in, or 403 FORBIDDEN for a `userId` the caller may not
    /// name. A body that is not a JSON object, or whose `userId` is not a string, is returned as it is:
    /// validation then answers 400.
    ///
    /// - `POST /hold`, `POST /release`: `userId` is optional and, when present, must be `sub`; it
    ///   becomes `sub`. An admin may name any user (and leaves `userId` out of a release).
    /// - `POST /purchase`: `userId` names the hold's owner (required; the core checks it against the
    ///   hold); an admin may leave it out.
    static func identified(route: Route, caller: Caller, body: [UInt8]) -> Result<[UInt8], ErrorBody> {
        guard route == .hold || route == .release || route == .purchase else { return .success(body) }
        guard case .success(.object(let object)) = RequestDecoder.parse(body) else { return .success(body) }
        let named: String?
        switch object["userId"] {
        case nil: named = nil
        case .string(let value)?: named = value
        case _?: return .success(body)
        }
        switch route {
        case .purchase:
            guard named != nil || caller.isAdmin else {
                return .failure(
                    .validation([
                        ValidationProblem(
                            field: "userId",
                            rule: .required,
                            message: "userId is required: the user whose hold is purchased"
                        )
                    ])
                )
            }
            return .success(body)
        case .hold, .release:
            if let named {
                guard named == caller.subject || caller.isAdmin else { return .failure(AccessRefusal.otherUser) }
                return .success(body)
            }
            if route == .release && caller.isAdmin { return .success(body) }
            return .success(inserting(userId: caller.subject, into: body, empty: object.isEmpty))
        default:
            return .success(body)
        }
    }

    /// `body` (a JSON object without `userId`, checked by the caller) with `"userId":"<user>"` as its
    /// first member. Spliced, not re-encoded: `user` is an identifier (no character needs escaping), and
    /// re-encoding the body through JSONEncoder would cost more than verifying the token.
    static func inserting(userId user: String, into body: [UInt8], empty: Bool) -> [UInt8] {
        guard let brace = body.firstIndex(of: UInt8(ascii: "{")) else { return body }
        var spliced = Array(body[...brace])
        spliced += Array(#""userId":"\#(user)""#.utf8)
        if !empty { spliced.append(UInt8(ascii: ",")) }
        spliced += body[(brace + 1)...]
        return spliced
    }

    /// `userId` of `hold.get` and `hold.extend`: the caller's, or none for an admin (who may read or extend any
    /// hold).
    static func holdGetUser(caller: Caller?) -> String? {
        guard let caller, !caller.isAdmin else { return nil }
        return caller.subject
    }
}

/// A refusal before the core is asked.
struct AccessDenied: Error, Sendable {
    var answer: RESTAnswer
}
