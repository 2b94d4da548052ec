import AMQPClient
import Contracts
import Foundation
import Logging
import PostgresClient
import RedisClient
import ServiceSupport
import TestSupport

@testable import InventoryRPC

/// Which Redis a fixture's core uses.
enum TestRedis {
    /// The machine's shared Redis (never flushed or stopped by a test; showtime ids keep keys apart).
    case shared
    /// A redis-server of the test's own on a free port, which the test may flush, stop or kill.
    case `private`
}

/// Logs of the core under test: errors to standard error, unless `CORE_TEST_LOG` says a level.
let testLogger = makeTestLogger("core.test", level: .error, variable: "CORE_TEST_LOG")

/// One test's core and everything it talks to.
struct CoreHarness: Sendable {
    /// The in-process core (nil when the fixture runs `inventory-rpc serve` processes instead).
    var core: CoreService?
    /// The `inventory-rpc serve` processes, when the fixture runs those.
    var processes: [ServerProcess] = []
    var client: RPCTestClient
    var events: EventRecorder
    var databaseURL: String
    var vhost: String
    var rabbitmqURL: String
    var redis: PrivateRedisServer?
    var redisURL: String
    /// The test's own service users, when the fixture runs the core as its proper broker user.
    var users: TestBrokerUsers?

    /// Defines `seats` seats `s1`...`sN` of a new showtime; returns its id.
    func showtime(seats: Int) async throws -> String {
        let showtimeID = "show-\(uniqueID())"
        let answer = try await client.call(
            .seatsDefine,
            SeatsDefineRequest(showtimeId: showtimeID, seatIds: (1...seats).map { "s\($0)" })
        )
        guard case .ok = try answer.decode(SeatsDefined.self) else {
            throw TestFailure("seats.define failed: \(String(decoding: answer.body, as: UTF8.self))")
        }
        return showtimeID
    }

    func hold(
        _ showtimeID: String,
        _ seats: [String],
        user: String = "u1",
        key: String? = nil,
        headers: [String: AMQPFieldValue] = [:]
    ) async throws -> RPCAnswer {
        try await client.call(
            .hold,
            HoldRequest(showtimeId: showtimeID, seatIds: seats, userId: user, idempotencyKey: key),
            headers: headers
        )
    }

    /// Runs a query on the test database (blocking; short).
    func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> [PostgresRow] {
        let connection = try ScratchDatabase.connect(databaseURL)
        defer { connection.close() }
        return try connection.query(sql, parameters).rows
    }
}

/// Runs `body` against a core of its own: its own vhost, database and (optionally) Redis. The core runs in
/// this process on its own threads, or, with `processes > 0`, as that many `inventory-rpc serve` processes
/// of the built binary. Everything is stopped and removed afterwards.
func withCore<T>(
    holdTTL: Int = 300,
    expiryInterval: Int = 30,
    workers: Int = 4,
    redis: TestRedis = .shared,
    processes: Int = 0,
    outboxPollInterval: Duration = .milliseconds(500),
    serviceUsers: Bool = false,
    prefetch: UInt16? = 8,
    maxHoldSeconds: Int = 900,
    maxSeatsPerUser: Int = 10,
    seatLimitCountsPurchased: Bool = false,
    maxRequestBytes: Int = 2 << 20,
    _ body: (CoreHarness) async throws -> T
) async throws -> T {
    let vhost = try ScratchVhost.create()
    defer { try? vhost.delete() }
    // With `serviceUsers`, the core logs in as the test's core user and its table names the test's users;
    // otherwise as guest. Either way the table grants guest (the harness's client) an admin's rights.
    let users = serviceUsers ? try TestBrokerUsers.create(vhost: vhost.name) : nil
    defer { users?.delete() }
    let coreURL = users?.url(.core) ?? vhost.url
    let permissions = try users?.permissions ?? BrokerPermissions.parse(permissionsWithGuest).get()
    let database = try ScratchDatabase.create(prefix: "core_test")
    defer { database.drop() }
    let databaseURL = database.url
    try database.withConnection { _ = try Migrator.migrate($0, logger: ScratchDatabase.logger) }
    let privateRedis = redis == .private ? try PrivateRedisServer() : nil
    defer { privateRedis?.stop() }
    let redisURL = privateRedis?.url ?? "redis://localhost:6379"

    var core: CoreService?
    var servers: [ServerProcess] = []
    defer {
        core?.stop()
        for server in servers { server.stop() }
    }
    if processes > 0 {
        var environment = [
            "DATABASE_URL": databaseURL, "REDIS_URL": redisURL, "RABBITMQ_URL": coreURL,
            "RPC_PERMISSIONS": "\(permissions)",
            "HOLD_TTL_SECONDS": "\(holdTTL)", "EXPIRY_INTERVAL_SECONDS": "\(expiryInterval)",
            "WORKERS": "\(workers)", "OPS_PORT": "0", "LOG_LEVEL": "info", "MAX_HOLD_SECONDS": "\(maxHoldSeconds)",
            "MAX_SEATS_PER_USER": "\(maxSeatsPerUser)", "SEAT_LIMIT_COUNTS_PURCHASED": "\(seatLimitCountsPurchased)",
            "MAX_REQUEST_BYTES": "\(maxRequestBytes)",
        ]
        if let prefetch { environment["PREFETCH"] = "\(prefetch)" }
        for _ in 0..<processes {
            servers.append(try ServerProcess(product: "inventory-rpc", ["serve"], environment: environment))
        }
        // The last start-up line.
        for server in servers { try await server.waitForOutput(containing: "Hold TTL:") }
    } else {
        let configuration = CoreConfiguration(
            databaseURL: databaseURL,
            redisURL: redisURL,
            rabbitmqURL: coreURL,
            holdTTLSeconds: holdTTL,
            expiryIntervalSeconds: expiryInterval,
            workers: workers,
            prefetch: prefetch ?? CoreConfiguration().prefetch,
            opsPort: 0,
            redisCommandTimeout: .milliseconds(200),
            outboxPollInterval: outboxPollInterval,
            relayLeaderRetry: .milliseconds(500),
            printsStartupLines: false,
            permissions: permissions,
            maxHoldSeconds: maxHoldSeconds,
            maxSeatsPerUser: maxSeatsPerUser,
            seatLimitCountsPurchased: seatLimitCountsPurchased,
            maxRequestBytes: maxRequestBytes
        )
        MetricsSetup.bootstrap()
        let service = CoreService(
            configuration: configuration,
            logger: testLogger,
            metricsExposition: { MetricsSetup.exposition() }
        )
        core = service
        try service.start()
    }
    let events = try EventRecorder(url: vhost.url, logger: testLogger)
    defer { events.close() }
    let client = try RPCTestClient(url: vhost.url, logger: testLogger)
    defer { client.close() }
    let harness = CoreHarness(
        core: core,
        processes: servers,
        client: client,
        events: events,
        databaseURL: databaseURL,
        vhost: vhost.name,
        rabbitmqURL: vhost.url,
        redis: privateRedis,
        redisURL: redisURL,
        users: users
    )
    return try await body(harness)
}
