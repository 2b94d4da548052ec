import Contracts
import Foundation
import Logging
import Testing

@testable import ServiceSupport

/// A temporary working directory with the given `.env.local` / `.env` contents, removed afterwards.
private func withDirectory<T>(
    files: [String: String] = [:],
    _ body: (String) async throws -> T
) async throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("service-support-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    for (name, contents) in files {
        try contents.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
    }
    return try await body(directory)
}

private func load(
    _ environment: [String: String] = [:],
    files: [String: String] = [:]
) async throws
    -> ServiceConfiguration
{
    try await withDirectory(files: files) { directory in
        try await ServiceConfiguration.load(environment: environment, directory: directory)
    }
}

/// The error `load` throws for these sources.
private func loadError(
    _ environment: [String: String],
    files: [String: String] = [:]
) async throws
    -> ConfigurationError?
{
    try await withDirectory(files: files) { directory -> ConfigurationError? in
        do throws(ConfigurationError) {
            _ = try await ServiceConfiguration.load(environment: environment, directory: directory)
            return nil
        } catch {
            return error
        }
    }
}

@Suite("Service configuration")
struct ServiceConfigurationTests {
    @Test("with nothing set, every variable takes INTERFACE.md's default")
    func defaults() async throws {
        let configuration = try await load()
        #expect(configuration.databaseURL == "postgresql://postgres:postgres@localhost:5432/inventory_db")
        #expect(configuration.redisURL == "redis://localhost:6379")
        #expect(configuration.rabbitMQURL == "amqp://guest:guest@localhost:5672")
        #expect(configuration.corsOrigins == ["http://localhost:3000"])
        #expect(configuration.port == 3005)
        #expect(configuration.holdTTLSeconds == 300)
        #expect(configuration.expiryIntervalSeconds == 30)
        #expect(configuration.maxSeatsPerHold == 10)
        #expect(configuration.rpcTimeoutMilliseconds == 5000)
        #expect(configuration.logLevel == .info)
        #expect(configuration.workers == 8)
        #expect(configuration.opsPort == 3006)
        #expect(configuration.prefetch == 8)
        #expect(configuration.idempotencyRetentionHours == 48)
        #expect(configuration == .defaults)
        #expect(configuration.holdTTL == .seconds(300))
        #expect(configuration.rpcTimeout == .milliseconds(5000))
    }

    @Test("every variable is read from the environment")
    func everyVariable() async throws {
        let configuration = try await load([
            "DATABASE_URL": "postgres://app:pw@db.example:6543/other",
            "REDIS_URL": "redis://:pw@cache:6380/2",
            "RABBITMQ_URL": "amqp://u:p@broker:5673/vhost",
            "CORS_ORIGIN": "http://a.example, https://b.example:8443",
            "PORT": "8080",
            "HOLD_TTL_SECONDS": "90",
            "EXPIRY_INTERVAL_SECONDS": "5",
            "MAX_SEATS_PER_HOLD": "4",
            "RPC_TIMEOUT_MS": "250",
            "LOG_LEVEL": "DEBUG",
            "WORKERS": "2",
            "OPS_PORT": "0",
            "PREFETCH": "64",
            "IDEMPOTENCY_RETENTION_HOURS": "24",
        ])
        #expect(configuration.databaseURL == "postgres://app:pw@db.example:6543/other")
        #expect(configuration.redisURL == "redis://:pw@cache:6380/2")
        #expect(configuration.rabbitMQURL == "amqp://u:p@broker:5673/vhost")
        #expect(configuration.corsOrigins == ["http://a.example", "https://b.example:8443"])
        #expect(configuration.port == 8080)
        #expect(configuration.holdTTLSeconds == 90)
        #expect(configuration.expiryIntervalSeconds == 5)
        #expect(configuration.maxSeatsPerHold == 4)
        #expect(configuration.rpcTimeoutMilliseconds == 250)
        #expect(configuration.logLevel == .debug)
        #expect(configuration.workers == 2)
        #expect(configuration.opsPort == 0)
        #expect(configuration.prefetch == 64)
        #expect(configuration.idempotencyRetentionHours == 24)
    }

    @Test("the venue features' variables: MAX_HOLD_SECONDS and HISTORY_RETENTION_DAYS, with their defaults")
    func venueVariables() async throws {
        let defaults = try await load([:])
        #expect(defaults.maxHoldSeconds == 900 && defaults.historyRetentionDays == 365)
        let configuration = try await load(["MAX_HOLD_SECONDS": "600", "HISTORY_RETENTION_DAYS": "30"])
        #expect(configuration.maxHoldSeconds == 600 && configuration.historyRetentionDays == 30)
        for (variable, value) in [
            ("MAX_HOLD_SECONDS", "0"), ("MAX_HOLD_SECONDS", "15m"), ("HISTORY_RETENTION_DAYS", "-1"),
        ] {
            let error = try #require(await loadError([variable: value]))
            #expect(error.variable == variable)
        }
    }

    @Test("a database URL may leave out the host, as libpq allows (the local socket)")
    func socketDatabaseURL() async throws {
        let configuration = try await load(["DATABASE_URL": "postgresql:///inventory_db?host=/var/run/postgresql"])
        #expect(configuration.databaseURL == "postgresql:///inventory_db?host=/var/run/postgresql")
    }

    @Test("a cluster's URLs (issue 18): several hosts in one URL, whole URLs in a list, the Sentinels' scheme")
    func clusterURLs() async throws {
        let database =
            "postgresql://postgres:pw@10.0.0.1:5432,10.0.0.2:5432/inventory_db?target_session_attrs=read-write"
        let broker = "amqp://core:pw@10.0.0.1:5672,10.0.0.2,10.0.0.3:5673/?queue_type=quorum"
        let brokers = "amqp://core:pw@10.0.0.1:5672,amqp://core:pw@10.0.0.2:5672"
        let redis = "redis-sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3/seat-inventory"
        let configuration = try await load(["DATABASE_URL": database, "RABBITMQ_URL": broker, "REDIS_URL": redis])
        #expect(configuration.databaseURL == database)
        #expect(configuration.rabbitMQURL == broker)
        #expect(configuration.redisURL == redis)
        #expect(try await load(["RABBITMQ_URL": brokers]).rabbitMQURL == brokers)
        for (variable, value) in [
            ("RABBITMQ_URL", "amqp://u:p@a:1,,b:2/"), ("DATABASE_URL", "postgresql://u:hunter2@h:1,h:99999/db"),
            ("REDIS_URL", "redis-sentinel://a:1,b:x/m"),
        ] {
            let error = try #require(await loadError([variable: value]))
            #expect(error.variable == variable)
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test("the environment wins over .env.local, which wins over .env")
    func precedence() async throws {
        let files = [
            ".env.local": "PORT=4001\nHOLD_TTL_SECONDS=120\n",
            ".env": "PORT=4002\nHOLD_TTL_SECONDS=130\nMAX_SEATS_PER_HOLD=3\n",
        ]
        let configuration = try await load(["PORT": "4000"], files: files)
        #expect(configuration.port == 4000)
        #expect(configuration.holdTTLSeconds == 120)
        #expect(configuration.maxSeatsPerHold == 3)
        #expect(configuration.rpcTimeoutMilliseconds == 5000)
    }

    @Test("environment files: comments, blank lines and quoted values; empty values count as unset")
    func fileSyntax() async throws {
        let files = [
            ".env.local": "# local overrides\n\nCORS_ORIGIN=\"http://x.example\"\nPORT=\n",
            ".env": "PORT='4100'\n",
        ]
        let configuration = try await load(["LOG_LEVEL": ""], files: files)
        #expect(configuration.corsOrigins == ["http://x.example"])
        #expect(configuration.port == 4100)
        #expect(configuration.logLevel == .info)
    }

    @Test(
        "a value that does not parse is an error naming the variable",
        arguments: [
            ("PORT", "abc"), ("PORT", "70000"), ("OPS_PORT", "-1"), ("HOLD_TTL_SECONDS", "-1"),
            ("HOLD_TTL_SECONDS", "0"), ("EXPIRY_INTERVAL_SECONDS", "1.5"), ("MAX_SEATS_PER_HOLD", "0"),
            ("RPC_TIMEOUT_MS", "5s"), ("WORKERS", "0"), ("PREFETCH", "many"), ("LOG_LEVEL", "loud"),
            ("IDEMPOTENCY_RETENTION_HOURS", "23"), ("IDEMPOTENCY_RETENTION_HOURS", "two days"),
            ("DATABASE_URL", "mysql://root:hunter2@localhost/db"), ("DATABASE_URL", "localhost:5432"),
            ("REDIS_URL", "http://localhost:6379"), ("RABBITMQ_URL", "amqps://guest:guest@localhost"),
            ("RABBITMQ_URL", "amqp://"), ("CORS_ORIGIN", "localhost:3000"), ("CORS_ORIGIN", " , "),
            ("RPC_PERMISSIONS", "inventory-facade"), ("RPC_PERMISSIONS", "inventory-gateway=availability,steal"),
        ]
    )
    func badValue(variable: String, value: String) async throws {
        let error = try #require(await loadError([variable: value]))
        #expect(error.variable == variable)
        #expect(error.source == "environment")
        #expect(error.description.contains(variable))
        #expect(!error.description.contains("\n"))
        #expect(!error.description.contains("hunter2"))
    }

    @Test("an error names the file a bad value came from")
    func badValueInFile() async throws {
        let error = try #require(await loadError([:], files: [".env": "WORKERS=lots\n"]))
        #expect(error.variable == "WORKERS")
        #expect(error.source == ".env")
        #expect(
            error.description
                == "invalid configuration: WORKERS (from .env): expected a whole number from 1 to 256, got 'lots'"
        )
    }

    @Test("a bad value hidden by a higher source is never read")
    func shadowedBadValue() async throws {
        let configuration = try await load(["PORT": "3100"], files: [".env": "PORT=abc\n"])
        #expect(configuration.port == 3100)
    }

    @Test("loadBlocking gives what load gives, from a thread outside Swift concurrency")
    func blocking() async throws {
        try await withDirectory(files: [".env": "PORT=3999\n"]) { directory in
            let result = BlockingResult<Result<ServiceConfiguration, ConfigurationError>>()
            let thread = Thread {
                do throws(ConfigurationError) {
                    result.set(.success(try ServiceConfiguration.loadBlocking(environment: [:], directory: directory)))
                } catch {
                    result.set(.failure(error))
                }
            }
            thread.start()
            let configuration = try await Task.detached { try result.wait().get() }.value
            #expect(configuration.port == 3999)
        }
    }

    @Test(
        "redaction masks the password of a URL and nothing else",
        arguments: [
            (
                "postgresql://postgres:postgres@localhost:5432/inventory_db",
                "postgresql://postgres:***@localhost:5432/inventory_db"
            ),
            ("amqp://guest:guest@localhost:5672", "amqp://guest:***@localhost:5672"),
            ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0"),
            ("amqp://u:p@ss@host/v", "amqp://u:***@host/v"),
            ("amqp://u:pa/ss@host/v", "amqp://u:***@host/v"),
            ("redis://localhost:6379", "redis://localhost:6379"),
            ("postgresql://user@localhost/db", "postgresql://user@localhost/db"),
            ("http://host/path?x=a:b@c", "http://host/path?x=a:b@c"),
            ("not a url", "not a url"),
        ]
    )
    func redaction(url: String, expected: String) {
        #expect(ServiceConfiguration.redacted(url: url) == expected)
    }

    @Test("log metadata never shows a password")
    func metadataIsRedacted() {
        let rendered = ServiceConfiguration.defaults.logMetadata.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        #expect(!rendered.contains("postgres:postgres@"))
        #expect(!rendered.contains("guest:guest@"))
        #expect(rendered.contains("DATABASE_URL=postgresql://postgres:***@localhost:5432/inventory_db"))
        // 13 variables, FACADE_OPS_PORT, FACADE_OPS_BIND, RPC_PERMISSIONS, IDEMPOTENCY_RETENTION_HOURS and the five of authentication.
        // Issue 14: the facade's edge (TRUSTED_PROXIES, 7 RATE_LIMIT_* and 5 HTTP_*) and the core's MAX_SEATS_PER_USER,
        // SEAT_LIMIT_COUNTS_PURCHASED, MAX_REQUEST_BYTES and OPS_BIND; issue 15: MAX_HOLD_SECONDS and HISTORY_RETENTION_DAYS.
        #expect(ServiceConfiguration.defaults.logMetadata.count == 22 + 13 + 4 + 2)
        var withSecret = ServiceConfiguration.defaults
        withSecret.auth.jwtSecret = "a-secret-that-must-never-be-logged-0123456789"
        let shown = withSecret.logMetadata.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        #expect(!shown.contains("a-secret-that-must-never-be-logged") && shown.contains("JWT_SECRET=***"))
    }

    @Test("RPC_PERMISSIONS replaces the default broker table; unset, it is INTERFACE.md's, which grants guest nothing")
    func rpcPermissions() async throws {
        #expect(try await load([:]).rpcPermissions == .default)
        #expect(!ServiceConfiguration.defaults.rpcPermissions.grantsGuest)
        let configuration = try await load(["RPC_PERMISSIONS": "guest=*,act-for-users,admin ops=ping"])
        #expect(configuration.rpcPermissions.grantsGuest)
        #expect(configuration.rpcPermissions.grants["ops"]?.operations == [.ping])
        #expect(configuration.rpcPermissions.grants["inventory-facade"] == nil)
    }

    // Issue 14 (i14-core).
    @Test("the seat limit, the request size limit and the core's operations address: defaults and values")
    func coreLimits() async throws {
        let defaults = try await load([:])
        #expect(defaults.maxSeatsPerUser == 10)
        #expect(defaults.seatLimitCountsPurchased == false)
        #expect(defaults.maxRequestBytes == 2_097_152)
        #expect(defaults.opsBindAddress == "127.0.0.1")
        let set = try await load([
            "MAX_SEATS_PER_USER": "0", "SEAT_LIMIT_COUNTS_PURCHASED": "true", "MAX_REQUEST_BYTES": "65536",
            "OPS_BIND": "::",
        ])
        #expect(set.maxSeatsPerUser == 0)
        #expect(set.seatLimitCountsPurchased)
        #expect(set.maxRequestBytes == 65_536)
        #expect(set.opsBindAddress == "::")
        for (variable, value) in [
            ("MAX_SEATS_PER_USER", "-1"), ("MAX_SEATS_PER_USER", "ten"), ("SEAT_LIMIT_COUNTS_PURCHASED", "maybe"),
            ("MAX_REQUEST_BYTES", "100"), ("OPS_BIND", "localhost"),
        ] {
            let error = try #require(await loadError([variable: value]))
            #expect(error.variable == variable)
        }
    }
}
