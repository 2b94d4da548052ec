import Logging

/// `AUTH_MODE`: `jwt` (the default) verifies bearer tokens; `none` is the seed's behaviour, for local
/// development only, and every process says so at start (``AuthSettings/disabledWarning``).
public enum AuthMode: String, Sendable, Equatable, CaseIterable {
    case jwt
    case none
}

/// How callers are authenticated (INTERFACE.md, "Who may do what"). The facade verifies tokens; the
/// other processes only print the warning when `AUTH_MODE=none`.
public struct AuthSettings: Sendable, Equatable {
    /// `AUTH_MODE`.
    public var mode: AuthMode
    /// `JWT_SECRET`: the HS256 key, at least 32 bytes. Never logged.
    public var jwtSecret: String?
    /// `JWT_PUBLIC_KEY_FILE`: a PEM public key (RSA for RS256, P-256 for ES256).
    public var jwtPublicKeyFile: String?
    /// `JWT_ISSUER`: when set, a token's `iss` must equal it.
    public var jwtIssuer: String?
    /// `JWT_AUDIENCE`: when set, a token's `aud` must contain it.
    public var jwtAudience: String?

    /// RFC 7518 3.2: an HMAC key at least as long as the hash output.
    public static let minimumSecretBytes = 32

    public init(
        mode: AuthMode = .jwt,
        jwtSecret: String? = nil,
        jwtPublicKeyFile: String? = nil,
        jwtIssuer: String? = nil,
        jwtAudience: String? = nil
    ) {
        self.mode = mode
        self.jwtSecret = jwtSecret
        self.jwtPublicKeyFile = jwtPublicKeyFile
        self.jwtIssuer = jwtIssuer
        self.jwtAudience = jwtAudience
    }

    /// The line every process prints (standard error) and logs at start when `AUTH_MODE=none`.
    public static let disabledWarning =
        "⚠️  AUTH_MODE=none: authentication is OFF, anyone who reaches this service may act for any user. "
        + "For local development only; never deploy it."

    /// With `AUTH_MODE=jwt`, one of `JWT_SECRET` and `JWT_PUBLIC_KEY_FILE` must be set: the error names
    /// the variable (a process that verifies tokens calls this after loading its configuration).
    public func requireTokenKey() throws(ConfigurationError) {
        guard mode == .jwt, jwtSecret == nil, jwtPublicKeyFile == nil else { return }
        throw ConfigurationError(
            variable: "JWT_SECRET",
            source: "environment, .env.local, .env",
            message:
                "AUTH_MODE=jwt (the default) needs JWT_SECRET or JWT_PUBLIC_KEY_FILE; "
                + "AUTH_MODE=none switches authentication off for local development"
        )
    }

    /// For ``ServiceConfiguration/logMetadata``: the secret only as set or unset.
    var logMetadata: Logger.Metadata {
        [
            "AUTH_MODE": "\(mode.rawValue)",
            "JWT_SECRET": "\(jwtSecret == nil ? "unset" : "***")",
            "JWT_PUBLIC_KEY_FILE": "\(jwtPublicKeyFile ?? "unset")",
            "JWT_ISSUER": "\(jwtIssuer ?? "unset")",
            "JWT_AUDIENCE": "\(jwtAudience ?? "unset")",
        ]
    }
}

extension ServiceProcess {
    /// Prints ``AuthSettings/disabledWarning`` on standard error and logs it as a warning when
    /// `AUTH_MODE=none`; does nothing otherwise. Every process calls it at start.
    public static func warnIfAuthenticationDisabled(_ settings: AuthSettings, logger: Logger) {
        guard settings.mode == .none else { return }
        StandardStreams.printError(AuthSettings.disabledWarning)
        logger.warning("authentication disabled", metadata: ["AUTH_MODE": "none"])
    }
}
