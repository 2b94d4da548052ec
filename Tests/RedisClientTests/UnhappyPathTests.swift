import Foundation
import RedisClient
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Failures, on private redis-servers")
struct UnhappyPathTests {
    @Test("Nothing listening: connectionFailed, fast, retryable")
    func nothingListening() async throws {
        let (result, elapsed) = try await onOwnThread {
            let port = try freePort()
            let start = ContinuousClock.now
            let result = outcome { () throws(RedisError) in
                try RedisConnection(url: "redis://127.0.0.1:\(port)", logger: testLogger)
            }
            return (result.map { _ in () }, ContinuousClock.now - start)
        }
        #expect(result.error?.kind == .connectionFailed)
        #expect(result.error?.message.contains("Connection refused") == true)
        #expect(result.error?.isRetryable == true)
        // Refused, not timed out: the message says so; the clock only shows it did not hang.
        #expect(elapsed < .seconds(10), "\(elapsed)")
    }

    @Test("Server stopped and restarted between calls: the next call reconnects and succeeds")
    func restartBetweenCalls() async throws {
        let (before, after, connected) = try await withPrivateServer { server in
            let redis = try RedisConnection(url: server.url, logger: testLogger)
            let before = try redis.command(["SET", "k", "before"])
            server.stop()
            try server.start()
            let after = try redis.command(["SET", "k", "after"])
            return (before, after, redis.isConnected)
        }
        #expect(before == .status("OK"))
        #expect(after == .status("OK"))
        #expect(connected)
    }

    @Test("Server down: calls fail with connectionFailed until it is back, then work again")
    func callsWhileDown() async throws {
        let observed = try await withPrivateServer { server in
            let redis = try RedisConnection(url: server.url, logger: testLogger)
            try redis.command(["PING"])
            server.stop()
            let whileDown = outcome { () throws(RedisError) in try redis.command(["PING"]) }
            let connectedWhileDown = redis.isConnected
            let stillDown = outcome { () throws(RedisError) in try redis.command(["PING"]) }
            try server.start()
            let back = try redis.command(["PING"])
            return (whileDown, connectedWhileDown, stillDown, back, redis.isConnected)
        }
        let (whileDown, connectedWhileDown, stillDown, back, connected) = observed
        #expect(whileDown.error?.kind == .connectionFailed)
        #expect(whileDown.error?.isRetryable == true)
        #expect(connectedWhileDown == false)
        #expect(stillDown.error?.kind == .connectionFailed)
        #expect(back == .status("PONG"))
        #expect(connected)
    }

    @Test("Server killed while a reply is awaited: connectionLost, not re-sent; the next call reconnects")
    func lostInFlight() async throws {
        let (lost, listLength) = try await withPrivateServer { server in
            let redis = try RedisConnection(url: server.url, commandTimeout: .seconds(5), logger: testLogger)
            let pid = server.pid
            let killer = Thread {
                usleep(300_000)
                kill(pid, SIGKILL)
            }
            killer.start()
            let lost = outcome { () throws(RedisError) in try redis.command(["BLPOP", "queue", "10"]) }
            try server.start()
            return (lost, try redis.command(["LLEN", "queue"]))
        }
        #expect(lost.error?.kind == .connectionLost)
        #expect(lost.error?.isRetryable == true)
        #expect(listLength == .integer(0))
    }

    @Test("Server paused (SIGSTOP): .timeout within about the command timeout; after SIGCONT it works again")
    func pausedServer() async throws {
        let timeout = Duration.milliseconds(300)
        let observed = try await withPrivateServer { server in
            let redis = try RedisConnection(url: server.url, commandTimeout: timeout, logger: testLogger)
            try redis.command(["SET", "k", "v"])
            server.pause()
            defer { server.resume() }
            var start = ContinuousClock.now
            let timedOut = outcome { () throws(RedisError) in try redis.command(["GET", "k"]) }
            let timedOutAfter = ContinuousClock.now - start
            let connectedAfterTimeout = redis.isConnected
            start = ContinuousClock.now
            let stillPaused = outcome { () throws(RedisError) in try redis.command(["GET", "k"]) }
            let stillPausedAfter = ContinuousClock.now - start
            server.resume()
            let resumed = try redis.command(["GET", "k"])
            return (timedOut, timedOutAfter, connectedAfterTimeout, stillPaused, stillPausedAfter, resumed)
        }
        let (timedOut, timedOutAfter, connectedAfterTimeout, stillPaused, stillPausedAfter, resumed) = observed
        #expect(timedOut.error?.kind == .timeout)
        #expect(timedOut.error?.isRetryable == true)
        // Waited for the timeout, then gave up (the upper bound only shows it did not hang).
        #expect(timedOutAfter >= .milliseconds(250) && timedOutAfter < .seconds(10), "\(timedOutAfter)")
        #expect(connectedAfterTimeout == false)
        // The reconnect connects (the kernel accepts for a stopped process) but its PING times out.
        #expect(stillPaused.error?.kind == .connectionFailed)
        #expect(stillPausedAfter < .seconds(10), "\(stillPausedAfter)")
        #expect(resumed == .string("v"))
    }

    @Test("Connecting to a paused server fails with connectionFailed within about the timeout")
    func connectToPausedServer() async throws {
        let (result, elapsed) = try await withPrivateServer { server in
            server.pause()
            defer { server.resume() }
            let start = ContinuousClock.now
            let result = outcome { () throws(RedisError) in
                try RedisConnection(url: server.url, commandTimeout: .milliseconds(200), logger: testLogger)
            }
            return (result.map { _ in () }, ContinuousClock.now - start)
        }
        #expect(result.error?.kind == .connectionFailed)
        #expect(result.error?.message.contains("no reply within") == true)
        // It waited for the timeout (at least most of it) and then gave up: not a hang. The upper bound is
        // far away so that a loaded machine cannot break it.
        #expect(elapsed >= .milliseconds(150) && elapsed < .seconds(10), "\(elapsed)")
    }

    @Test("Wrong or missing password: connectionFailed in Redis's words, not retryable, password not shown")
    func password() async throws {
        let (wrong, missing, right, asUser) = try await withPrivateServer(password: "right-pw") { server in
            let base = "127.0.0.1:\(server.port)"
            return (
                outcome { () throws(RedisError) in
                    try RedisConnection(url: "redis://:wrong-pw@\(base)", logger: testLogger).command(["PING"])
                },
                outcome { () throws(RedisError) in
                    try RedisConnection(url: "redis://\(base)", logger: testLogger).command(["PING"])
                },
                try RedisConnection(url: "redis://:right-pw@\(base)/2", logger: testLogger).command(["PING"]),
                try RedisConnection(url: "redis://default:right-pw@\(base)", logger: testLogger).command(["PING"])
            )
        }
        #expect(wrong.error?.kind == .connectionFailed)
        #expect(wrong.error?.isRetryable == false)
        #expect(wrong.error?.message.contains("WRONGPASS") == true)
        #expect(wrong.error?.description.contains("wrong-pw") == false)
        #expect(missing.error?.kind == .connectionFailed)
        #expect(missing.error?.message.contains("NOAUTH") == true)
        #expect(right == .status("PONG"))
        #expect(asUser == .status("PONG"))
    }

    @Test("Reconnecting authenticates and selects the database again")
    func reconnectRedoesHandshake() async throws {
        let (value, database) = try await withPrivateServer(password: "pw") { server in
            let redis = try RedisConnection(url: "redis://:pw@127.0.0.1:\(server.port)/5", logger: testLogger)
            try redis.command(["SET", "k", "before"])
            server.stop()
            try server.start()
            try redis.command(["SET", "k", "after"])
            let check = try RedisConnection(url: "redis://:pw@127.0.0.1:\(server.port)/5", logger: testLogger)
            return (try check.command(["GET", "k"]), try redis.command(["CLIENT", "INFO"]).stringValue ?? "")
        }
        #expect(value == .string("after"))
        #expect(database.contains(" db=5 "))
    }
}
