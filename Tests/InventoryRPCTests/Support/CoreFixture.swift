import AMQPClient
import Contracts
import Foundation
import Logging
import PostgresClient
import RedisClient
import ServiceSupport

@testable import InventoryRPC

/// Which Redis a fixture's core uses.
enum TestRedis {
    /// The machine's shared Redis (never flushed or stopped by a test; showtime ids keep keys apart).
    case shared
    /// A redis-server of the test's own on a free port, which the test may flush, stop or kill.
    case `private`
}

/// Logs of the core under test: warnings and worse to standard error, unless `CORE_TEST_LOG` says a level.
let testLogger: Logger = {
    var logger = Logger(label: "core.test") { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .trace
        return handler
    }
    let level = ProcessInfo.processInfo.environment["CORE_TEST_LOG"].flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = level ?? .error
    return logger
}()

/// A random id for names in the shared services.
func uniqueID() -> String {
    String(UInt64.random(in: 0...UInt64.max), radix: 36)
}

/// A RabbitMQ vhost of the test's own, so the fixed names of INTERFACE.md can stay as pinned.
struct TestVhost {
    let name: String

    static func create() throws -> TestVhost {
        let name = "test-\(uniqueID())"
        try rabbitmqctl(["add_vhost", name])
        try rabbitmqctl(["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
        return TestVhost(name: name)
    }

    var url: String { "amqp://guest:guest@localhost:5672/\(name)" }

    func delete() {
        try? Self.rabbitmqctl(["delete_vhost", name])
    }

    private static func rabbitmqctl(_ arguments: [String]) throws {
        let output = try runProcess("/usr/sbin/rabbitmqctl", ["-q"] + arguments)
        if output.status != 0 {
            throw FixtureError("rabbitmqctl \(arguments.joined(separator: " ")) failed: \(output.text)")
        }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A redis-server of the test's own: no persistence, on a free port.
final class PrivateRedis: @unchecked Sendable {
    // @unchecked: `process` is replaced only by start()/stop(), which tests call from one task at a time.
    let port: Int
    private var process: ChildProcess?

    init() throws {
        port = freePort()
        try start()
    }

    var url: String { "redis://127.0.0.1:\(port)" }

    func start() throws {
        process = try ChildProcess(
            "/usr/bin/redis-server",
            ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        )
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if let connection = try? RedisConnection(url: url, logger: testLogger) {
                defer { connection.close() }
                if (try? connection.command(["PING"])) != nil { return }
            }
            usleep(20_000)
        }
        throw FixtureError("private redis-server on \(port) did not start")
    }

    func command(_ arguments: [String]) throws -> RedisValue {
        let connection = try RedisConnection(url: url, logger: testLogger)
        defer { connection.close() }
        return try connection.command(arguments)
    }

    /// Kills the server (no persistence: nothing to save).
    func stop() {
        guard let process else { return }
        process.signal(SIGCONT)
        process.signal(SIGKILL)
        process.wait()
        self.process = nil
    }

    /// Freezes the server (SIGSTOP): connections stay open, commands time out.
    func pause() { process?.signal(SIGSTOP) }
    func resume() { process?.signal(SIGCONT) }

    deinit { stop() }
}

/// One test's core and everything it talks to.
struct CoreHarness: Sendable {
    /// The in-process core (nil when the fixture runs `inventory-rpc serve` processes instead).
    var core: CoreService?
    /// The `inventory-rpc serve` processes, when the fixture runs those.
    var processes: [ServeProcess] = []
    var client: RPCTestClient
    var events: EventCollector
    var databaseURL: String
    var vhost: String
    var rabbitmqURL: String
    var redis: PrivateRedis?
    var redisURL: String

    /// Defines `seats` seats `s1`...`sN` of a new showtime; returns its id.
    func showtime(seats: Int) async throws -> String {
        let showtimeID = "show-\(uniqueID())"
        let answer = try await client.call(
            .seatsDefine,
            SeatsDefineRequest(showtimeId: showtimeID, seatIds: (1...seats).map { "s\($0)" })
        )
        guard case .ok = try answer.decode(SeatsDefined.self) else {
            throw FixtureError("seats.define failed: \(String(decoding: answer.body, as: UTF8.self))")
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
        let connection = try PostgresConnection(url: databaseURL, logger: testLogger)
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
    prefetch: UInt16? = 8,
    _ body: (CoreHarness) async throws -> T
) async throws -> T {
    let vhost = try TestVhost.create()
    defer { vhost.delete() }
    let database = try TestDatabase.create(prefix: "core_test")
    defer { TestDatabase.drop(database) }
    let databaseURL = TestDatabase.url(database: database)
    do {
        let connection = try TestDatabase.connect(databaseURL)
        defer { connection.close() }
        _ = try Migrator.migrate(connection, logger: TestDatabase.logger)
    }
    let privateRedis = redis == .private ? try PrivateRedis() : nil
    defer { privateRedis?.stop() }
    let redisURL = privateRedis?.url ?? "redis://localhost:6379"

    var core: CoreService?
    var servers: [ServeProcess] = []
    defer {
        core?.stop()
        for server in servers { server.stop() }
    }
    if processes > 0 {
        var environment = [
            "DATABASE_URL": databaseURL, "REDIS_URL": redisURL, "RABBITMQ_URL": vhost.url,
            "HOLD_TTL_SECONDS": "\(holdTTL)", "EXPIRY_INTERVAL_SECONDS": "\(expiryInterval)",
            "WORKERS": "\(workers)", "OPS_PORT": "0", "LOG_LEVEL": "info",
        ]
        if let prefetch { environment["PREFETCH"] = "\(prefetch)" }
        for _ in 0..<processes { servers.append(try ServeProcess(environment: environment)) }
        for server in servers { try await server.waitUntilStarted() }
    } else {
        let configuration = CoreConfiguration(
            databaseURL: databaseURL,
            redisURL: redisURL,
            rabbitmqURL: vhost.url,
            holdTTLSeconds: holdTTL,
            expiryIntervalSeconds: expiryInterval,
            workers: workers,
            prefetch: prefetch ?? CoreConfiguration().prefetch,
            opsPort: 0,
            redisCommandTimeout: .milliseconds(200),
            outboxPollInterval: outboxPollInterval,
            relayLeaderRetry: .milliseconds(500),
            printsStartupLines: false
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
    let events = try EventCollector(url: vhost.url)
    defer { events.close() }
    let client = try RPCTestClient(url: vhost.url)
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
        redisURL: redisURL
    )
    return try await body(harness)
}

/// `inventory-rpc serve`, the built binary beside the test bundle, as a child process.
final class ServeProcess: Sendable {
    let child: ChildProcess
    let outputPath: String

    /// The binary beside the test bundle, or `INVENTORY_RPC_BIN` (to run a test against another build of the
    /// core, e.g. main's, and show that the test catches what it guards against).
    static var binary: String {
        if let other = ProcessInfo.processInfo.environment["INVENTORY_RPC_BIN"], !other.isEmpty { return other }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("inventory-rpc").path
    }

    init(environment: [String: String]) throws {
        outputPath = NSTemporaryDirectory() + "inventory-rpc-\(uniqueID()).log"
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { $1 }
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw FixtureError("\(Self.binary) is missing: run `swift build --build-tests` first")
        }
        child = try ChildProcess(Self.binary, ["serve"], environment: merged, outputPath: outputPath)
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Waits (bounded poll) for the last start-up line.
    func waitUntilStarted(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if output.contains("Hold TTL:") { return }
            guard child.isRunning else { throw FixtureError("inventory-rpc exited at start:\n\(output)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw FixtureError("inventory-rpc did not start in time:\n\(output)")
    }

    /// SIGTERM, then the exit status (nil if it did not exit within `timeout`; it is killed then).
    @discardableResult
    func terminate(timeout: Duration = .seconds(10)) -> Int32? {
        child.signal(SIGTERM)
        if let status = child.wait(timeout: timeout) { return status }
        child.signal(SIGKILL)
        child.wait()
        return nil
    }

    func stop() {
        if child.isRunning { terminate() }
        unlink(outputPath)
    }
}
