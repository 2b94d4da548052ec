import Configuration
import Contracts
import Foundation
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything the two processes read from their environment.
///
/// Sources, first match wins: the process environment, then `.env.local`, then `.env` in the working
/// directory; a variable set nowhere takes its default. An empty value counts as unset, as it does
/// for most `.env` readers, so `PORT=` in the environment lets `.env` decide.
public struct ServiceConfiguration: Sendable, Equatable {
    /// `DATABASE_URL`: a `postgresql://` (or `postgres://`) URL.
    public var databaseURL: String
    /// `REDIS_URL`: a `redis://` URL.
    public var redisURL: String
    /// `RABBITMQ_URL`: an `amqp://` URL.
    public var rabbitMQURL: String
    /// `CORS_ORIGIN`: the origins the facade allows, from a comma-separated list (`*` allows any).
    public var corsOrigins: [String]
    /// `PORT`: the REST facade's port (0 picks a free one).
    public var port: Int
    /// `HOLD_TTL_SECONDS`: how long a hold lives.
    public var holdTTLSeconds: Int
    /// `EXPIRY_INTERVAL_SECONDS`: how often the expiry sweep runs.
    public var expiryIntervalSeconds: Int
    /// `MAX_SEATS_PER_HOLD`: the most seats one hold may take.
    public var maxSeatsPerHold: Int
    /// `RPC_TIMEOUT_MS`: how long the facade waits for the core's reply.
    public var rpcTimeoutMilliseconds: Int
    /// `LOG_LEVEL`: one of swift-log's levels (`trace` ... `critical`; `warn` is taken for `warning`).
    public var logLevel: Logger.Level
    /// `WORKERS`: the core's worker threads, each with its own connections.
    public var workers: Int
    /// `OPS_PORT`: the core's operations HTTP port (`/metrics`, `/healthz`, `/readyz`; 0 picks a free one).
    public var opsPort: Int
    /// `PREFETCH`: unacknowledged RPC requests the broker hands each core worker at once (all its queues
    /// together).
    public var prefetch: Int
    /// `AUTH_MODE`, `JWT_*`: how the facade authenticates callers (see ``AuthSettings``).
    public var auth: AuthSettings
    /// `FACADE_OPS_PORT`: the facade's operations port (`/metrics`; 0 picks a free one).
    public var facadeOpsPort: Int
    /// `FACADE_OPS_BIND`: the address the facade's operations port listens on (loopback by default).
    public var facadeOpsBindAddress: String
    /// `RPC_PERMISSIONS`: which broker user may call which RPC operation (the core's table; see
    /// ``BrokerPermissions``). Default: INTERFACE.md's table, which grants `guest` nothing.
    public var rpcPermissions: BrokerPermissions
    /// `IDEMPOTENCY_RETENTION_HOURS`: how long an idempotency record (a key's first answer) is kept; at least
    /// 24 (INTERFACE.md rule 9).
    public var idempotencyRetentionHours: Int
    // Venue features (issue 15).
    /// `MAX_HOLD_SECONDS`: the longest a hold may live with its extensions, from its creation.
    public var maxHoldSeconds: Int = 900
    /// `HISTORY_RETENTION_DAYS`: how long seat history entries are kept.
    public var historyRetentionDays: Int = 365
    /// The facade's edge: `TRUSTED_PROXIES`, `RATE_LIMIT_*`, `HTTP_*` (see ``EdgeSettings``; issue 14).
    public var edge = EdgeSettings()
    // Issue 14 (i14-core): the per-user seat limit, the core's AMQP edge, its operations port's address.
    /// `MAX_SEATS_PER_USER`: the most seats of one showtime a user may have in live holds (0: no limit).
    public var maxSeatsPerUser: Int = 10
    /// `SEAT_LIMIT_COUNTS_PURCHASED`: purchased seats count against `MAX_SEATS_PER_USER` too.
    public var seatLimitCountsPurchased: Bool = false
    /// `MAX_REQUEST_BYTES`: the core answers a larger RPC request `PAYLOAD_TOO_LARGE` without reading it.
    public var maxRequestBytes: Int = 2 << 20
    /// `OPS_BIND`: the address the core's operations port listens on (loopback by default).
    public var opsBindAddress: String = "127.0.0.1"

    /// The defaults of INTERFACE.md's table and of the README's.
    public static let defaults = ServiceConfiguration(
        databaseURL: "postgresql://postgres:postgres@localhost:5432/inventory_db",
        redisURL: "redis://localhost:6379",
        rabbitMQURL: "amqp://guest:guest@localhost:5672",
        corsOrigins: ["http://localhost:3000"],
        port: 3005,
        holdTTLSeconds: 300,
        expiryIntervalSeconds: 30,
        maxSeatsPerHold: 10,
        rpcTimeoutMilliseconds: 5000,
        logLevel: .info,
        workers: 8,
        opsPort: 3006,
        prefetch: 8,
        auth: AuthSettings(),
        facadeOpsPort: 3007,
        facadeOpsBindAddress: "127.0.0.1",
        rpcPermissions: .default,
        idempotencyRetentionHours: 48
    )

    public init(
        databaseURL: String,
        redisURL: String,
        rabbitMQURL: String,
        corsOrigins: [String],
        port: Int,
        holdTTLSeconds: Int,
        expiryIntervalSeconds: Int,
        maxSeatsPerHold: Int,
        rpcTimeoutMilliseconds: Int,
        logLevel: Logger.Level,
        workers: Int,
        opsPort: Int,
        prefetch: Int,
        auth: AuthSettings = AuthSettings(),
        facadeOpsPort: Int = 3007,
        facadeOpsBindAddress: String = "127.0.0.1",
        rpcPermissions: BrokerPermissions = .default,
        idempotencyRetentionHours: Int = 48
    ) {
        self.databaseURL = databaseURL
        self.redisURL = redisURL
        self.rabbitMQURL = rabbitMQURL
        self.corsOrigins = corsOrigins
        self.port = port
        self.holdTTLSeconds = holdTTLSeconds
        self.expiryIntervalSeconds = expiryIntervalSeconds
        self.maxSeatsPerHold = maxSeatsPerHold
        self.rpcTimeoutMilliseconds = rpcTimeoutMilliseconds
        self.logLevel = logLevel
        self.workers = workers
        self.opsPort = opsPort
        self.prefetch = prefetch
        self.auth = auth
        self.facadeOpsPort = facadeOpsPort
        self.facadeOpsBindAddress = facadeOpsBindAddress
        self.rpcPermissions = rpcPermissions
        self.idempotencyRetentionHours = idempotencyRetentionHours
    }

    public var holdTTL: Duration { .seconds(holdTTLSeconds) }
    public var expiryInterval: Duration { .seconds(expiryIntervalSeconds) }
    public var rpcTimeout: Duration { .milliseconds(rpcTimeoutMilliseconds) }

    /// Every value, URLs with their passwords masked: safe to log.
    public var logMetadata: Logger.Metadata {
        [
            "DATABASE_URL": "\(Self.redacted(url: databaseURL))",
            "REDIS_URL": "\(Self.redacted(url: redisURL))",
            "RABBITMQ_URL": "\(Self.redacted(url: rabbitMQURL))",
            "CORS_ORIGIN": "\(corsOrigins.joined(separator: ","))",
            "PORT": "\(port)",
            "HOLD_TTL_SECONDS": "\(holdTTLSeconds)",
            "EXPIRY_INTERVAL_SECONDS": "\(expiryIntervalSeconds)",
            "MAX_SEATS_PER_HOLD": "\(maxSeatsPerHold)",
            "RPC_TIMEOUT_MS": "\(rpcTimeoutMilliseconds)",
            "LOG_LEVEL": "\(logLevel)",
            "WORKERS": "\(workers)",
            "OPS_PORT": "\(opsPort)",
            "PREFETCH": "\(prefetch)",
            "FACADE_OPS_PORT": "\(facadeOpsPort)",
            "FACADE_OPS_BIND": "\(facadeOpsBindAddress)",
            "RPC_PERMISSIONS": "\(rpcPermissions)",
            "IDEMPOTENCY_RETENTION_HOURS": "\(idempotencyRetentionHours)",
            "MAX_HOLD_SECONDS": "\(maxHoldSeconds)",
            "HISTORY_RETENTION_DAYS": "\(historyRetentionDays)",
            "TRUSTED_PROXIES": "\(edge.trustedProxies.map(\.text).joined(separator: ","))",
            "RATE_LIMIT_ENABLED": "\(edge.rateLimitEnabled)",
            "RATE_LIMIT_KEY_PREFIX": "\(edge.rateLimitKeyPrefix)",
            "RATE_LIMIT_WINDOW_SECONDS": "\(edge.rateLimitWindowSeconds)",
            "RATE_LIMIT_USER_WRITES": "\(edge.userWrites)",
            "RATE_LIMIT_ADDRESS_WRITES": "\(edge.addressWrites)",
            "RATE_LIMIT_USER_READS": "\(edge.userReads)",
            "RATE_LIMIT_ADDRESS_READS": "\(edge.addressReads)",
            "HTTP_MAX_CONNECTIONS": "\(edge.maxConnections)",
            "HTTP_MAX_CONNECTIONS_PER_ADDRESS": "\(edge.maxConnectionsPerAddress)",
            "HTTP_HEADER_TIMEOUT_SECONDS": "\(edge.headerTimeoutSeconds)",
            "HTTP_BODY_TIMEOUT_SECONDS": "\(edge.bodyTimeoutSeconds)",
            "HTTP_IDLE_TIMEOUT_SECONDS": "\(edge.idleTimeoutSeconds)",
            "MAX_SEATS_PER_USER": "\(maxSeatsPerUser)",
            "SEAT_LIMIT_COUNTS_PURCHASED": "\(seatLimitCountsPurchased)",
            "MAX_REQUEST_BYTES": "\(maxRequestBytes)",
            "OPS_BIND": "\(opsBindAddress)",
        ].merging(auth.logMetadata) { current, _ in current }
    }
}

/// A variable that did not parse, or an environment file that could not be read.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The variable (or file) at fault.
    public var variable: String
    /// Where the value came from: `environment`, `.env.local` or `.env`.
    public var source: String
    public var message: String

    public init(variable: String, source: String, message: String) {
        self.variable = variable
        self.source = source
        self.message = message
    }

    /// One line, naming the variable; never contains a password.
    public var description: String {
        "invalid configuration: \(variable) (from \(source)): \(message)"
    }
}

// MARK: - Loading

extension ServiceConfiguration {
    /// The files read after the environment, in order.
    public static let environmentFiles = [".env.local", ".env"]

    /// Reads the configuration from `environment`, then `.env.local`, then `.env` in `directory`.
    /// Missing files are fine; a value that does not parse throws, naming the variable.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String = FileManager.default.currentDirectoryPath
    ) async throws(ConfigurationError) -> ServiceConfiguration {
        var sources: [(name: String, reader: ConfigReader)] = [
            ("environment", ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
        ]
        for file in environmentFiles {
            let path = FilePath(directory).appending(file)
            do {
                let provider = try await EnvironmentVariablesProvider(environmentFilePath: path, allowMissing: true)
                sources.append((file, ConfigReader(provider: provider)))
            } catch {
                throw ConfigurationError(variable: file, source: path.string, message: "cannot read the file: \(error)")
            }
        }
        return try Parser(sources: sources).parse()
    }

    /// ``load(environment:directory:)`` for a thread outside Swift concurrency, such as `main` before the
    /// service starts its threads. Never call it from an async context.
    public static func loadBlocking(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String = FileManager.default.currentDirectoryPath
    ) throws(ConfigurationError) -> ServiceConfiguration {
        let result = BlockingResult<Result<ServiceConfiguration, ConfigurationError>>()
        Task.detached {
            do throws(ConfigurationError) {
                result.set(.success(try await load(environment: environment, directory: directory)))
            } catch {
                result.set(.failure(error))
            }
        }
        return try result.wait().get()
    }

    /// `scheme://user:password@host...` with the password replaced by `***`; anything else unchanged.
    /// Takes the last `@` before any query as the end of the password, so that a password with an
    /// unencoded `/` or `@` is still masked (masking too much is safe; too little is not).
    public static func redacted(url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let beforeQuery = rest[..<(rest.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? rest.endIndex)]
        guard let at = beforeQuery.lastIndex(of: "@"),
            let colon = beforeQuery[..<at].firstIndex(of: ":")
        else { return url }
        return String(url[...colon]) + "***" + String(url[at...])
    }
}

/// Reads each variable from the first source that has a non-empty value and checks it.
private struct Parser {
    var sources: [(name: String, reader: ConfigReader)]

    func parse() throws(ConfigurationError) -> ServiceConfiguration {
        var configuration = try parseCommon()
        let defaults = ServiceConfiguration.defaults
        // Venue features (issue 15).
        configuration.maxHoldSeconds = try integer("MAX_HOLD_SECONDS", in: 1...86_400, default: defaults.maxHoldSeconds)
        configuration.historyRetentionDays = try integer(
            "HISTORY_RETENTION_DAYS",
            in: 1...36_500,
            default: defaults.historyRetentionDays
        )
        return configuration
    }

    private func parseCommon() throws(ConfigurationError) -> ServiceConfiguration {
        let defaults = ServiceConfiguration.defaults
        var configuration = try parseCore(defaults)
        configuration.edge = try edge()
        return configuration
    }

    /// `TRUSTED_PROXIES`, `RATE_LIMIT_*`, `HTTP_*`: the facade's edge (issue 14).
    private func edge() throws(ConfigurationError) -> EdgeSettings {
        var edge = EdgeSettings()
        if let (raw, source) = lookup("TRUSTED_PROXIES") {
            var ranges: [AddressRange] = []
            for item in raw.split(separator: ",") where !item.trimmingCharacters(in: .whitespaces).isEmpty {
                guard let range = AddressRange(String(item)) else {
                    throw ConfigurationError(
                        variable: "TRUSTED_PROXIES",
                        source: source,
                        message: "expected IP addresses or CIDR ranges separated by commas, got '\(item)'"
                    )
                }
                ranges.append(range)
            }
            edge.trustedProxies = ranges
        }
        if let (raw, source) = lookup("RATE_LIMIT_ENABLED") {
            switch raw.lowercased() {
            case "true", "1", "yes", "on": edge.rateLimitEnabled = true
            case "false", "0", "no", "off": edge.rateLimitEnabled = false
            default:
                throw ConfigurationError(
                    variable: "RATE_LIMIT_ENABLED",
                    source: source,
                    message: "expected true or false, got '\(raw)'"
                )
            }
        }
        let defaults = EdgeSettings()
        if let (raw, _) = lookup("RATE_LIMIT_KEY_PREFIX") { edge.rateLimitKeyPrefix = raw }
        edge.rateLimitWindowSeconds = try integer(
            "RATE_LIMIT_WINDOW_SECONDS",
            in: 1...3_600,
            default: defaults.rateLimitWindowSeconds
        )
        edge.userWrites = try integer("RATE_LIMIT_USER_WRITES", in: 1...1_000_000, default: defaults.userWrites)
        edge.addressWrites = try integer(
            "RATE_LIMIT_ADDRESS_WRITES",
            in: 1...1_000_000,
            default: defaults.addressWrites
        )
        edge.userReads = try integer("RATE_LIMIT_USER_READS", in: 1...1_000_000, default: defaults.userReads)
        edge.addressReads = try integer("RATE_LIMIT_ADDRESS_READS", in: 1...1_000_000, default: defaults.addressReads)
        edge.maxConnections = try integer("HTTP_MAX_CONNECTIONS", in: 16...100_000, default: defaults.maxConnections)
        edge.maxConnectionsPerAddress = try integer(
            "HTTP_MAX_CONNECTIONS_PER_ADDRESS",
            in: 1...100_000,
            default: defaults.maxConnectionsPerAddress
        )
        edge.headerTimeoutSeconds = try integer(
            "HTTP_HEADER_TIMEOUT_SECONDS",
            in: 1...3_600,
            default: defaults.headerTimeoutSeconds
        )
        edge.bodyTimeoutSeconds = try integer(
            "HTTP_BODY_TIMEOUT_SECONDS",
            in: 1...3_600,
            default: defaults.bodyTimeoutSeconds
        )
        edge.idleTimeoutSeconds = try integer(
            "HTTP_IDLE_TIMEOUT_SECONDS",
            in: 1...3_600,
            default: defaults.idleTimeoutSeconds
        )
        return edge
    }

    private func parseCore(_ defaults: ServiceConfiguration) throws(ConfigurationError) -> ServiceConfiguration {
        var configuration = ServiceConfiguration(
            // libpq takes a URL without a host: the local socket.
            databaseURL: try url(
                "DATABASE_URL",
                schemes: ["postgresql", "postgres"],
                requiresHost: false,
                default: defaults.databaseURL
            ),
            redisURL: try url("REDIS_URL", schemes: ["redis", "redis-sentinel"], default: defaults.redisURL),
            rabbitMQURL: try url("RABBITMQ_URL", schemes: ["amqp"], default: defaults.rabbitMQURL),
            corsOrigins: try origins("CORS_ORIGIN", default: defaults.corsOrigins),
            port: try integer("PORT", in: 0...65_535, default: defaults.port),
            holdTTLSeconds: try integer("HOLD_TTL_SECONDS", in: 1...86_400, default: defaults.holdTTLSeconds),
            expiryIntervalSeconds: try integer(
                "EXPIRY_INTERVAL_SECONDS",
                in: 1...3_600,
                default: defaults.expiryIntervalSeconds
            ),
            maxSeatsPerHold: try integer("MAX_SEATS_PER_HOLD", in: 1...10_000, default: defaults.maxSeatsPerHold),
            rpcTimeoutMilliseconds: try integer(
                "RPC_TIMEOUT_MS",
                in: 1...600_000,
                default: defaults.rpcTimeoutMilliseconds
            ),
            logLevel: try logLevel("LOG_LEVEL", default: defaults.logLevel),
            workers: try integer("WORKERS", in: 1...256, default: defaults.workers),
            opsPort: try integer("OPS_PORT", in: 0...65_535, default: defaults.opsPort),
            prefetch: try integer("PREFETCH", in: 1...65_535, default: defaults.prefetch),
            auth: try auth(),
            facadeOpsPort: try integer("FACADE_OPS_PORT", in: 0...65_535, default: defaults.facadeOpsPort),
            facadeOpsBindAddress: try ipAddress("FACADE_OPS_BIND", default: defaults.facadeOpsBindAddress),
            rpcPermissions: try permissions("RPC_PERMISSIONS", default: defaults.rpcPermissions),
            idempotencyRetentionHours: try integer(
                "IDEMPOTENCY_RETENTION_HOURS",
                in: 24...87_600,
                default: defaults.idempotencyRetentionHours
            )
        )
        // Issue 14 (i14-core).
        configuration.maxSeatsPerUser = try integer(
            "MAX_SEATS_PER_USER",
            in: 0...10_000,
            default: defaults.maxSeatsPerUser
        )
        configuration.seatLimitCountsPurchased = try boolean(
            "SEAT_LIMIT_COUNTS_PURCHASED",
            default: defaults.seatLimitCountsPurchased
        )
        configuration.maxRequestBytes = try integer(
            "MAX_REQUEST_BYTES",
            in: 1_024...(128 << 20),
            default: defaults.maxRequestBytes
        )
        configuration.opsBindAddress = try ipAddress("OPS_BIND", default: defaults.opsBindAddress)
        return configuration
    }

    private func boolean(_ name: String, default value: Bool) throws(ConfigurationError) -> Bool {
        guard let (raw, source) = lookup(name) else { return value }
        switch raw.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default:
            throw ConfigurationError(variable: name, source: source, message: "expected true or false, got '\(raw)'")
        }
    }

    /// `AUTH_MODE`, `JWT_SECRET` (secret), `JWT_PUBLIC_KEY_FILE`, `JWT_ISSUER`, `JWT_AUDIENCE`. Whether a
    /// key is present is checked by the process that verifies tokens (``AuthSettings/requireTokenKey()``).
    private func auth() throws(ConfigurationError) -> AuthSettings {
        var settings = AuthSettings()
        if let (raw, source) = lookup("AUTH_MODE") {
            guard let mode = AuthMode(rawValue: raw.lowercased()) else {
                throw ConfigurationError(
                    variable: "AUTH_MODE",
                    source: source,
                    message: "expected jwt or none, got '\(raw)'"
                )
            }
            settings.mode = mode
        }
        if let (raw, source) = lookup("JWT_SECRET", isSecret: true) {
            // RFC 7518 3.2: an HS256 key is at least as long as the hash (32 bytes).
            guard raw.utf8.count >= AuthSettings.minimumSecretBytes else {
                throw ConfigurationError(
                    variable: "JWT_SECRET",
                    source: source,
                    message: "expected at least \(AuthSettings.minimumSecretBytes) bytes, got \(raw.utf8.count)"
                )
            }
            settings.jwtSecret = raw
        }
        if let (raw, source) = lookup("JWT_PUBLIC_KEY_FILE") {
            if settings.jwtSecret != nil {
                throw ConfigurationError(
                    variable: "JWT_PUBLIC_KEY_FILE",
                    source: source,
                    message: "set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both"
                )
            }
            settings.jwtPublicKeyFile = raw
        }
        settings.jwtIssuer = lookup("JWT_ISSUER")?.value
        settings.jwtAudience = lookup("JWT_AUDIENCE")?.value
        return settings
    }

    private func ipAddress(_ name: String, default value: String) throws(ConfigurationError) -> String {
        guard let (raw, source) = lookup(name) else { return value }
        var v4 = in_addr()
        var v6 = in6_addr()
        guard inet_pton(AF_INET, raw, &v4) == 1 || inet_pton(AF_INET6, raw, &v6) == 1 else {
            throw ConfigurationError(
                variable: name,
                source: source,
                message: "expected an IPv4 or IPv6 address such as 127.0.0.1, got '\(raw)'"
            )
        }
        return raw
    }

    private func permissions(
        _ name: String,
        default value: BrokerPermissions
    ) throws(ConfigurationError) -> BrokerPermissions {
        guard let (raw, source) = lookup(name) else { return value }
        switch BrokerPermissions.parse(raw) {
        case .success(let permissions): return permissions
        case .failure(let error):
            throw ConfigurationError(variable: name, source: source, message: error.description)
        }
    }

    /// The raw value and where it came from, or nil when no source sets it.
    private func lookup(_ name: String, isSecret: Bool = false) -> (value: String, source: String)? {
        for source in sources {
            if let raw = source.reader.string(forKey: ConfigKey([name]), isSecret: isSecret) {
                let value = Self.unquoted(raw.trimmingCharacters(in: .whitespaces))
                if !value.isEmpty { return (value, source.name) }
            }
        }
        return nil
    }

    /// `.env` files often quote values; the environment file reader keeps the quotes.
    private static func unquoted(_ value: String) -> String {
        guard value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first else {
            return value
        }
        return String(value.dropFirst().dropLast())
    }

    private func integer(
        _ name: String,
        in range: ClosedRange<Int>,
        default value: Int
    ) throws(ConfigurationError)
        -> Int
    {
        guard let (raw, source) = lookup(name) else { return value }
        guard let parsed = Int(raw), range.contains(parsed) else {
            throw ConfigurationError(
                variable: name,
                source: source,
                message: "expected a whole number from \(range.lowerBound) to \(range.upperBound), got '\(raw)'"
            )
        }
        return parsed
    }

    private func url(
        _ name: String,
        schemes: [String],
        requiresHost: Bool = true,
        default value: String
    ) throws(ConfigurationError) -> String {
        guard let (raw, source) = lookup(name, isSecret: true) else { return value }
        let shown = ServiceConfiguration.redacted(url: raw)
        func failure(_ problem: String) -> ConfigurationError {
            ConfigurationError(variable: name, source: source, message: "\(problem), got '\(shown)'")
        }
        let expected = "expected a \(schemes[0]):// URL"
        guard let schemeEnd = raw.range(of: "://"),
            schemes.contains(raw[..<schemeEnd.lowerBound].lowercased())
        else { throw failure(expected) }
        // Issue 18: several hosts of one cluster (decisions 0025, 0026), each checked as a URL of its own.
        for single in Self.singleHostURLs(raw) {
            guard let components = URLComponents(string: single) else { throw failure("\(expected) that parses") }
            if requiresHost, components.host?.isEmpty ?? true { throw failure("\(expected) with a host") }
            if let port = components.port, !(1...65_535).contains(port) {
                throw failure("\(expected) with a port from 1 to 65535")
            }
        }
        return raw
    }

    /// Issue 18: `scheme://user@h1:1,h2:2/path?q` (libpq's multi-host form, also taken for AMQP and Redis
    /// Sentinels) as one URL per host; comma-separated whole URLs (`amqp://h1,amqp://h2`) split where each
    /// starts. Anything else comes back as it is.
    static func singleHostURLs(_ raw: String) -> [String] {
        guard raw.contains(","), let schemeEnd = raw.range(of: "://") else { return [raw] }
        let scheme = String(raw[..<schemeEnd.upperBound])
        if raw.contains("," + scheme) {
            let parts = raw.components(separatedBy: "," + scheme)
            return [parts[0]] + parts.dropFirst().map { scheme + $0 }
        }
        let rest = raw[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var userInfo: Substring = ""
        var hosts = authority
        if let at = authority.lastIndex(of: "@") {
            userInfo = authority[...at]
            hosts = authority[authority.index(after: at)...]
        }
        guard hosts.contains(",") else { return [raw] }
        return hosts.split(separator: ",", omittingEmptySubsequences: false).map {
            scheme + userInfo + $0 + rest[authorityEnd...]
        }
    }

    private func origins(_ name: String, default value: [String]) throws(ConfigurationError) -> [String] {
        guard let (raw, source) = lookup(name) else { return value }
        let origins = raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for origin in origins where origin != "*" {
            let isHTTP = origin.hasPrefix("http://") || origin.hasPrefix("https://")
            guard isHTTP, let host = URLComponents(string: origin)?.host, !host.isEmpty else {
                throw ConfigurationError(
                    variable: name,
                    source: source,
                    message: "expected '*' or http(s)://host[:port] origins separated by commas, got '\(origin)'"
                )
            }
        }
        guard !origins.isEmpty else {
            throw ConfigurationError(variable: name, source: source, message: "expected at least one origin")
        }
        return origins
    }

    private func logLevel(_ name: String, default value: Logger.Level) throws(ConfigurationError) -> Logger.Level {
        guard let (raw, source) = lookup(name) else { return value }
        let lowered = raw.lowercased()
        if let level = Logger.Level(rawValue: lowered == "warn" ? "warning" : lowered) { return level }
        let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
        throw ConfigurationError(variable: name, source: source, message: "expected one of \(names), got '\(raw)'")
    }
}
