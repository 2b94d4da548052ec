import Foundation
import RedisClient
import Synchronization

/// A redis-server of the test's own on a free port, no persistence, for what must not happen to the
/// shared one: stopping, pausing, flushing it, a password. Killed when the fixture ends.
public final class PrivateRedisServer: Sendable {
    public let port: Int
    public let password: String?
    private let process = Mutex<ChildProcess?>(nil)

    public init(password: String? = nil) throws {
        port = try freePort()
        self.password = password
        try start()
    }

    deinit { stop() }

    public var url: String {
        if let password { "redis://:\(password)@127.0.0.1:\(port)" } else { "redis://127.0.0.1:\(port)" }
    }

    public var pid: Int32 { process.withLock { $0?.pid ?? 0 } }

    /// Starts the server (again, after `stop()`), and waits (bounded poll) until it accepts connections.
    public func start() throws {
        // A previous server must be gone, listening socket and all, or the readiness check below could
        // reach it instead of the new one (which then fails to bind). Reaped means every fd is closed.
        stop()
        var arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", NSTemporaryDirectory(),
        ]
        if let password { arguments += ["--requirepass", password] }
        let child = try ChildProcess("/usr/bin/redis-server", arguments)
        process.withLock { $0 = child }
        let deadline = ContinuousClock.now + .seconds(10)
        while !acceptsConnections(port: port) {
            guard child.isRunning, ContinuousClock.now < deadline else {
                stop()
                throw TestFailure("redis-server on port \(port) did not start")
            }
            usleep(10_000)
        }
    }

    /// SIGKILL: the server vanishes without a word, as in a crash (no persistence: nothing to save).
    public func stop() {
        guard let child = process.withLock({ $0.take() }) else { return }
        child.signal(SIGCONT)
        child.signal(SIGKILL)
        child.wait()
    }

    /// Freezes the server (SIGSTOP): connections stay open, commands time out.
    public func pause() { process.withLock { $0?.signal(SIGSTOP) } }
    public func resume() { process.withLock { $0?.signal(SIGCONT) } }

    /// One command over a connection of its own.
    @discardableResult
    public func command(_ arguments: [String]) throws -> RedisValue {
        let connection = try RedisConnection(url: url, logger: fixtureLogger)
        defer { connection.close() }
        return try connection.command(arguments)
    }
}

/// Keys under a prefix unique to one test, on a Redis that others use too: `removeAll` deletes every key
/// under it, and nothing else.
public struct RedisKeySpace: Sendable {
    public let prefix: String

    public init(_ label: String = "test") {
        prefix = "\(label):\(UUID().uuidString):"
    }

    public func callAsFunction(_ name: String) -> String { prefix + name }

    public func removeAll(_ connection: RedisConnection) throws {
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
