import Foundation
import Logging
import RedisClient

#if canImport(Glibc)
    import Glibc
#endif

/// The shared Redis every engineer's tests use: only our own prefixed keys, never anything global.
let sharedRedisURL = ProcessInfo.processInfo.environment["REDIS_URL"] ?? "redis://127.0.0.1:6379"

let testLogger: Logger = {
    var logger = Logger(label: "RedisClientTests")
    logger.logLevel = .critical
    return logger
}()

/// RedisConnection blocks, and blocking calls must not run on Swift's cooperative pool: each test does its
/// Redis work on a thread of its own and hands back what it observed; expectations run in the test itself.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    ignoreSIGPIPE
    return try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

/// hiredis writes with write(2); a process using it ignores SIGPIPE, as the service's main does.
private let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

/// Keys under a prefix unique to one test run; `removeAll` deletes every key under it.
struct KeySpace: Sendable {
    let prefix = "redisclient-test:\(UUID().uuidString):"
    func callAsFunction(_ name: String) -> String { prefix + name }

    func removeAll(_ connection: RedisConnection) throws {
        var cursor = "0"
        repeat {
            let reply = try connection.command(["SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"])
            guard let parts = reply.arrayValue, parts.count == 2, let next = parts[0].stringValue,
                let keys = parts[1].arrayValue?.compactMap(\.stringValue)
            else { return }
            if !keys.isEmpty { try connection.command(["DEL"] + keys) }
            cursor = next
        } while cursor != "0"
    }
}

/// Runs `body` on its own thread with a connection to the shared Redis and a fresh key space, removing the
/// keys afterwards whatever happened.
func withSharedRedis<T: Sendable>(
    url: String = sharedRedisURL, commandTimeout: Duration = .seconds(2),
    _ body: @escaping @Sendable (RedisConnection, KeySpace) throws -> T
) async throws -> T {
    try await onOwnThread {
        let keys = KeySpace()
        let connection = try RedisConnection(url: url, commandTimeout: commandTimeout, logger: testLogger)
        defer {
            // A test may have closed or broken its connection: clean up over a fresh one.
            if let cleaner = try? RedisConnection(url: url, logger: testLogger) { try? keys.removeAll(cleaner) }
        }
        return try body(connection, keys)
    }
}

/// Captures a call's outcome so it can travel back to the test for `#expect`.
func outcome<T>(_ body: () throws(RedisError) -> T) -> Result<T, RedisError> {
    do throws(RedisError) { return .success(try body()) } catch { return .failure(error) }
}

extension Result {
    var error: Failure? { if case .failure(let error) = self { error } else { nil } }
    var value: Success? { try? get() }
}

/// A redis-server of our own on a free port, for what must not happen to the shared one: stopping it,
/// pausing it, SCRIPT FLUSH, a password. Killed when the fixture ends.
final class PrivateRedisServer {
    let port: Int
    let password: String?
    private var process: Process?

    init(password: String? = nil) throws {
        self.port = try freeTCPPort()
        self.password = password
        try start()
    }

    deinit { stop() }

    var url: String {
        if let password { "redis://:\(password)@127.0.0.1:\(port)" } else { "redis://127.0.0.1:\(port)" }
    }
    var pid: Int32 { process?.processIdentifier ?? 0 }

    func start() throws {
        // A previous server must be gone, listening socket and all, or the readiness check below could
        // reach it instead of the new one (which then fails to bind). Reaped means every fd is closed.
        if let previous = process {
            kill(previous.processIdentifier, SIGKILL)
            previous.waitUntilExit()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        var arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", NSTemporaryDirectory(),
        ]
        if let password { arguments += ["--requirepass", password] }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Nothing to await: poll, bounded, until it accepts connections.
        let deadline = ContinuousClock.now + .seconds(10)
        while !acceptsConnections(port: port) {
            guard process.isRunning, ContinuousClock.now < deadline else {
                stop()
                throw TestFailure("redis-server on port \(port) did not start")
            }
            usleep(10_000)
        }
    }

    /// SIGKILL: the server vanishes without a word, as in a crash.
    func stop() {
        guard let process else { return }
        kill(process.processIdentifier, SIGCONT)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    func pause() { kill(pid, SIGSTOP) }
    func resume() { kill(pid, SIGCONT) }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A port nothing listens on right now (the kernel's pick for port 0, released again).
func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
        }
    }
    guard bound else { throw TestFailure("bind failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

func acceptsConnections(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            connect(fd, socketAddress, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Runs `body` on its own thread with a private redis-server, killed afterwards whatever happened.
func withPrivateServer<T: Sendable>(
    password: String? = nil, _ body: @escaping @Sendable (PrivateRedisServer) throws -> T
) async throws -> T {
    try await onOwnThread {
        let server = try PrivateRedisServer(password: password)
        defer { server.stop() }
        return try body(server)
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
