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

    /// The first line that satisfies `match`, waiting for it (bounded): the access log is written by a
    /// thread of its own, shortly after the answer (decision 0024).
    func first(within timeout: Duration = .seconds(10), where match: (String) -> Bool) -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let line = all.first(where: match) { return line }
            guard ContinuousClock.now < deadline else { return nil }
            usleep(10_000)
        }
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
    let authMode: AuthMode
    let logs = LogCapture()
    private(set) var core: ServerProcess?
    private(set) var facade: Facade?
    let coreLogPath: String

    /// The facade's `JWT_SECRET` (authentication is on, as by default); `minter` signs with it.
    static let jwtSecret = "stack-test-secret-0123456789abcdef0123456789"
    static let minter = TokenMinter.hs256Blocking(secret: jwtSecret)
    /// `JWT_ISSUER` and `JWT_AUDIENCE` of the stack's facade: checked, so tests can get them wrong.
    static let issuer = "https://auth.test.example"
    static let audience = "seat-inventory"

    /// A good token for `user` with `scopes`.
    static func token(_ user: String, scopes: [String] = [], ttlSeconds: Int = 3600) -> String {
        try! minter.mint(subject: user, scopes: scopes, ttlSeconds: ttlSeconds, issuer: issuer, audience: audience)
    }

    /// The token `request` sends unless told otherwise: an admin who may also purchase, so that tests
    /// about other things may name any `userId` (the authorization tests use their own tokens).
    static let operatorToken = token("test-operator", scopes: [Scope.admin, Scope.purchase], ttlSeconds: 86_400)
    /// The `Authorization` header with ``operatorToken``, for raw requests.
    static var bearer: (String, String) { ("Authorization", "Bearer \(operatorToken)") }

    /// The facade's edge settings. Rate limits are off and the per-address connection limit is far up
    /// unless a test sets them (the other tests play hundreds of clients from one address and one user).
    var edge: EdgeSettings = {
        var edge = EdgeSettings()
        edge.rateLimitEnabled = false
        edge.maxConnectionsPerAddress = 4_000
        return edge
    }()
    var redisURL = "redis://localhost:6379"
    /// The in-process facade's logger; nil: one writing to ``logs``.
    var facadeLogger: Logger?

    init(rpcTimeoutMilliseconds: Int = 3000, holdTTLSeconds: Int = 300, authMode: AuthMode = .jwt) {
        self.authMode = authMode
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
    var opsPort: Int { facade?.opsPort ?? 0 }

    /// The environment both processes read.
    var environment: [String: String] {
        [
            "DATABASE_URL": databaseURL, "RABBITMQ_URL": rabbitMQURL, "REDIS_URL": "redis://localhost:6379",
            // The facade under test logs in as guest: the core's table grants it what the facade's user has.
            "RPC_PERMISSIONS": permissionsWithGuest,
            "OPS_PORT": "0", "PORT": "0", "WORKERS": "4", "LOG_LEVEL": "info",
            "RPC_TIMEOUT_MS": "\(rpcTimeoutMilliseconds)", "HOLD_TTL_SECONDS": "\(holdTTLSeconds)",
            "MAX_SEATS_PER_HOLD": "10", "CORS_ORIGIN": "http://localhost:3000,https://tickets.example.com",
            // For a facade started as a process (the core reads none of these).
            "JWT_SECRET": Self.jwtSecret, "JWT_ISSUER": Self.issuer, "JWT_AUDIENCE": Self.audience,
            "FACADE_OPS_PORT": "0",
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
        configuration.auth = AuthSettings(
            mode: authMode,
            jwtSecret: Self.jwtSecret,
            jwtIssuer: Self.issuer,
            jwtAudience: Self.audience
        )
        configuration.facadeOpsPort = 0
        configuration.edge = edge
        configuration.redisURL = redisURL
        MetricsSetup.bootstrap()
        facade = try Facade(configuration: configuration, logger: facadeLogger ?? logs.logger(label: "http-facade"))
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

    /// A request with `Authorization: Bearer <token>` (``operatorToken`` by default; nil sends none).
    func request(
        _ method: String,
        _ path: String,
        headers: [(String, String)] = [],
        body: String? = nil,
        token: String? = Stack.operatorToken
    ) throws -> TestResponse {
        var headers = headers
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        return try HTTPTestClient.request(port: port, method, path, headers: headers, body: body)
    }

    /// `GET /metrics` on the operations port.
    func metrics() throws -> TestResponse {
        try HTTPTestClient.request(port: opsPort, "GET", "/metrics")
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
    authMode: AuthMode = .jwt,
    _ body: @escaping @Sendable (Stack) throws -> T
) async throws -> T {
    try await blocking {
        let stack = Stack(
            rpcTimeoutMilliseconds: rpcTimeoutMilliseconds,
            holdTTLSeconds: holdTTLSeconds,
            authMode: authMode
        )
        defer { stack.close() }
        try stack.start()
        return try body(stack)
    }
}
