import Contracts
import Foundation
import HTTPFacade
import Logging
import ServiceSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to completion; its output (stdout and stderr together) and status.
@discardableResult
func run(
    _ program: String,
    _ arguments: [String],
    environment: [String: String] = [:]
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// Where `swift build` put the executables: beside the test bundle.
enum Products {
    static var directory: URL {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        // swift test runs .../debug/<package>PackageTests.xctest; the products are in .../debug.
        while directory.path != "/"
            && !FileManager.default.fileExists(atPath: directory.appendingPathComponent("inventory-rpc").path)
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }

    static func path(_ name: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("\(name) not built (looked in \(directory.path)); run swift build first")
        }
        return path
    }
}

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

/// A unique name for this test process and call: `prefix-<pid>-<n>`.
func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(getpid())-\(nameCounter.add(1, ordering: .relaxed).newValue)-\(UInt32.random(in: 0...UInt32.max))"
}

private let nameCounter = Atomic<Int>(0)

/// A core (`inventory-rpc serve`) and an in-process facade on their own RabbitMQ vhost and PostgreSQL
/// database, so that tests run beside other engineers' services and each other. `close()` removes all
/// of it.
final class Stack: @unchecked Sendable {
    // @unchecked: mutable state (`core`, `facade`) is changed only by the test that owns the stack,
    // one step at a time.
    let vhost: String
    let database: String
    let rpcTimeoutMilliseconds: Int
    let holdTTLSeconds: Int
    let logs = LogCapture()
    private(set) var core: Process?
    private(set) var facade: Facade?
    private var coreOutput: FileHandle?
    let coreLogPath: String

    static let postgres = ["PGPASSWORD": "postgres"]

    init(rpcTimeoutMilliseconds: Int = 3000, holdTTLSeconds: Int = 300) {
        let id = uniqueName("facade")
        vhost = "test-\(id)"
        database = "test_" + id.replacingOccurrences(of: "-", with: "_")
        self.rpcTimeoutMilliseconds = rpcTimeoutMilliseconds
        self.holdTTLSeconds = holdTTLSeconds
        coreLogPath = NSTemporaryDirectory() + "\(id)-core.log"
    }

    var rabbitMQURL: String { "amqp://guest:guest@localhost:5672/\(vhost)" }
    var databaseURL: String { "postgresql://postgres:postgres@localhost:5432/\(database)" }

    var port: Int { facade?.port ?? 0 }

    /// The environment both processes read.
    var environment: [String: String] {
        [
            "DATABASE_URL": databaseURL, "RABBITMQ_URL": rabbitMQURL, "REDIS_URL": "redis://localhost:6379",
            // The facade under test logs in as guest: the core's table grants it what the facade's user has.
            "RPC_PERMISSIONS": "\(BrokerPermissions.default) guest=*,act-for-users,admin",
            "OPS_PORT": "0", "PORT": "0", "WORKERS": "4", "LOG_LEVEL": "info",
            "RPC_TIMEOUT_MS": "\(rpcTimeoutMilliseconds)", "HOLD_TTL_SECONDS": "\(holdTTLSeconds)",
            "MAX_SEATS_PER_HOLD": "10", "CORS_ORIGIN": "http://localhost:3000,https://tickets.example.com",
        ]
    }

    /// Creates the vhost and the database, migrates, starts the core and the facade, and waits until
    /// `/readyz` says 200.
    func start() throws {
        try createVhost()
        let created = try run(
            "/usr/bin/createdb",
            ["-h", "localhost", "-U", "postgres", database],
            environment: Self.postgres
        )
        guard created.status == 0 else { throw TestFailure("createdb: \(created.output)") }
        let migrated = try run(try Products.path("inventory-rpc"), ["migrate"], environment: environment)
        guard migrated.status == 0 else { throw TestFailure("migrate: \(migrated.output)") }
        try startCore()
        try startFacade()
        try waitUntilReady()
    }

    func createVhost() throws {
        let added = try run("/usr/sbin/rabbitmqctl", ["add_vhost", vhost])
        guard added.status == 0 else { throw TestFailure("add_vhost: \(added.output)") }
        let permitted = try run("/usr/sbin/rabbitmqctl", ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
        guard permitted.status == 0 else { throw TestFailure("set_permissions: \(permitted.output)") }
    }

    func deleteVhost() throws {
        try run("/usr/sbin/rabbitmqctl", ["delete_vhost", vhost])
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

    func startCore() throws {
        if !FileManager.default.fileExists(atPath: coreLogPath) {
            guard FileManager.default.createFile(atPath: coreLogPath, contents: nil) else {
                throw TestFailure("cannot create \(coreLogPath)")
            }
        }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: coreLogPath))
        output.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Products.path("inventory-rpc"))
        process.arguments = ["serve"]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        core = process
        coreOutput = output
    }

    /// SIGTERM, then waits for the core to exit (it promises to within 10 s).
    func stopCore() {
        guard let core else { return }
        if core.isRunning { core.terminate() }
        let deadline = Date().addingTimeInterval(15)
        while core.isRunning && Date() < deadline { usleep(20_000) }
        if core.isRunning { kill(core.processIdentifier, SIGKILL) }
        core.waitUntilExit()
        self.core = nil
        try? coreOutput?.close()
        coreOutput = nil
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
        _ = try? run(
            "/usr/bin/dropdb",
            ["-h", "localhost", "-U", "postgres", "--if-exists", "--force", database],
            environment: Self.postgres
        )
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
