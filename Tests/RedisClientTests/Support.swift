import Foundation
import Logging
import RedisClient
import TestSupport

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
    return try await blocking(body)
}

/// hiredis writes with write(2); a process using it ignores SIGPIPE, as the service's main does.
private let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

/// Runs `body` on its own thread with a connection to the shared Redis and a fresh key space, removing the
/// keys afterwards whatever happened.
func withSharedRedis<T: Sendable>(
    url: String = sharedRedisURL,
    commandTimeout: Duration = .seconds(2),
    _ body: @escaping @Sendable (RedisConnection, RedisKeySpace) throws -> T
) async throws -> T {
    try await onOwnThread {
        let keys = RedisKeySpace("redisclient-test")
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

/// Runs `body` on its own thread with a private redis-server, killed afterwards whatever happened.
func withPrivateServer<T: Sendable>(
    password: String? = nil,
    _ body: @escaping @Sendable (PrivateRedisServer) throws -> T
) async throws -> T {
    try await onOwnThread {
        let server = try PrivateRedisServer(password: password)
        defer { server.stop() }
        return try body(server)
    }
}
