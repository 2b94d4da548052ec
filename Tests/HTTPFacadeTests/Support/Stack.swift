import Foundation
import HTTPFacade
import Logging
import ServiceSupport
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Log lines of the in-process facade, kept for the tests to read.
final class LogCapture: @unchecked Sendable {
    // @unchecked: `lines` is only touched under `lock`.
    private let lock = NSLock()
    private var lines: [String] = []

    func append(_ line: String) {
        lock.lock()
        lines.append(line)
        lock.unlock()
    }

    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    func logger(label: String) -> Logger {
        Logger(label: label) { label in
            LineLogHandler(label: label, level: .info, output: { [self] line in append(line) })
        }
    }
}

/// A core (`inventory-rpc serve`) and an in-process facade on their own RabbitMQ vhost and PostgreSQL
/// database, so that tests run beside other engineers' services and each other. `close()` removes all
/// of it.
final class Stack: @unchecked Sendable {
    // @unchecked: mutable state (`core`, `facade`) is changed only by the test that owns the stack,
    // one step at a time.
    let vhost: ScratchVhost
    let database: ScratchDatabase
    let rpcTimeoutMilliseconds: Int
    let holdTTLSeconds: Int
    let logs = LogCapture()
    private(set) var core: ServerProcess?
    private(set) var facade: Facade?
    let coreLogPath: String

    init(rpcTimeoutMilliseconds: Int = 3000, holdTTLSeconds: Int = 300) {
        let id = uniqueName("facade")
        vhost = ScratchVhost(name: "test-\(id)")
        database = ScratchDatabase(prefix: "test_facade")
        self.rpcTimeoutMilliseconds = rpcTimeoutMilliseconds
        self.holdTTLSeconds = holdTTLSeconds
        coreLogPath = NSTemporaryDirectory() + "\(id)-core.log"
    }

    var rabbitMQURL: String { vhost.url }
    var databaseURL: String { database.url }

    var port: Int { facade?.port ?? 0 }

    /// The environment both processes read.
    var environment: [String: String] {
        [
            "DATABASE_URL": databaseURL, "RABBITMQ_URL": rabbitMQURL, "REDIS_URL": "redis://localhost:6379",
            "OPS_PORT": "0", "PORT": "0", "WORKERS": "4", "LOG_LEVEL": "info",
            "RPC_TIMEOUT_MS": "\(rpcTimeoutMilliseconds)", "HOLD_TTL_SECONDS": "\(holdTTLSeconds)",
            "MAX_SEATS_PER_HOLD": "10", "CORS_ORIGIN": "http://localhost:3000,https://tickets.example.com",
        ]
    }

    /// Creates the vhost and the database, migrates, starts the core and the facade, and waits until
    /// `/readyz` says 200.
    func start() throws {
        try createVhost()
        try database.create()
        try database.migrateWithBuiltCore(environment: environment)
        try startCore()
        try startFacade()
        try waitUntilReady()
    }

    func createVhost() throws {
        try vhost.create()
    }

    func deleteVhost() throws {
        try vhost.delete()
    }

    func startFacade() throws {
        var configuration = ServiceConfiguration.defaults
        configuration.rabbitMQURL = rabbitMQURL
        configuration.port = 0
        configuration.rpcTimeoutMilliseconds = rpcTimeoutMilliseconds
        configuration.corsOrigins = ["http://localhost:3000", "https://tickets.example.com"]
        configuration.maxSeatsPerHold = 10
        MetricsSetup.bootstrap()
        facade = try Facade(configuration: configuration, logger: logs.logger(label: "http-facade"))
    }

    func stopFacade() {
        facade?.shutdown()
        facade = nil
    }

    /// Starts `inventory-rpc serve`; its output is appended to one log over restarts.
    func startCore() throws {
        core = try ServerProcess(product: "inventory-rpc", ["serve"], environment: environment, logPath: coreLogPath)
    }

    /// SIGTERM, then waits for the core to exit (it promises to within 10 s).
    func stopCore() {
        core?.stop(timeout: .seconds(15))
        core = nil
    }

    /// Polls `/readyz` (bounded): the facade is connected and the core answers ping.
    func waitUntilReady(timeout: Duration = .seconds(30)) throws {
        let deadline = ContinuousClock.now + timeout
        var last = "nothing yet"
        while ContinuousClock.now < deadline {
            if let response = try? HTTPTestClient.request(port: port, "GET", "/readyz"), response.status == 200 {
                return
            } else if let response = try? HTTPTestClient.request(port: port, "GET", "/readyz") {
                last = response.text
            }
            usleep(100_000)
        }
        throw TestFailure("not ready within \(timeout): \(last); core log: \(coreLog.suffix(2000))")
    }

    var coreLog: String {
        (try? String(contentsOfFile: coreLogPath, encoding: .utf8)) ?? ""
    }

    /// Stops both processes and removes the vhost, the database and the core's log.
    func close() {
        stopFacade()
        stopCore()
        try? deleteVhost()
        database.drop()
        try? FileManager.default.removeItem(atPath: coreLogPath)
    }

    // MARK: Requests

    func request(
        _ method: String,
        _ path: String,
        headers: [(String, String)] = [],
        body: String? = nil
    ) throws -> TestResponse {
        try HTTPTestClient.request(port: port, method, path, headers: headers, body: body)
    }

    /// Defines `count` seats `s1`... on a new showtime and returns its id.
    func showtime(seats count: Int = 10) throws -> String {
        let id = uniqueName("show")
        let seats = (1...count).map { "\"s\($0)\"" }.joined(separator: ",")
        let response = try request("PUT", "/showtimes/\(id)/seats", body: "{\"seatIds\":[\(seats)]}")
        guard response.status == 200 else { throw TestFailure("defining seats: \(response.status) \(response.text)") }
        return id
    }
}

/// Runs `body` with a started stack and always cleans up.
func withStack<T: Sendable>(
    rpcTimeoutMilliseconds: Int = 3000,
    holdTTLSeconds: Int = 300,
    _ body: @escaping @Sendable (Stack) throws -> T
) async throws -> T {
    try await blocking {
        let stack = Stack(rpcTimeoutMilliseconds: rpcTimeoutMilliseconds, holdTTLSeconds: holdTTLSeconds)
        defer { stack.close() }
        try stack.start()
        return try body(stack)
    }
}
