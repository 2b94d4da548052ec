import Foundation
import RedisClient
import TestSupport
import Testing

@Suite("Commands against the shared Redis")
struct CommandTests {
    @Test("SET NX EX sets once; a second NX gets null and the first value stays, with its TTL")
    func setNX() async throws {
        let (first, second, value, ttl) = try await withSharedRedis { redis, keys in
            let key = keys("seat")
            return (
                try redis.command(["SET", key, "hold-1", "NX", "EX", "60"]),
                try redis.command(["SET", key, "hold-2", "NX", "EX", "60"]),
                try redis.command(["GET", key]),
                try redis.command(["TTL", key])
            )
        }
        #expect(first == .status("OK"))
        #expect(second == .null)
        #expect(value == .string("hold-1"))
        #expect((1...60).contains(ttl.intValue ?? -1))
    }

    @Test(
        "Values with spaces, CRLF, NUL, unicode and the empty string round-trip byte for byte",
        arguments: ["with spaces", "line\r\nbreak", "nul\u{0}inside", "Grüße 🎟️ 座席", "", "*3\r\n$3\r\nSET"])
    func binarySafe(value: String) async throws {
        let (stored, length) = try await withSharedRedis { redis, keys in
            let key = keys("a key with spaces ✓")
            try redis.command(["SET", key, value])
            return (try redis.command(["GET", key]), try redis.command(["STRLEN", key]))
        }
        #expect(stored == .string(value))
        #expect(length == .integer(value.utf8.count))
    }

    @Test("Integer, array and null replies convert, nested arrays included")
    func replyTypes() async throws {
        let (incremented, list, mget, nested, missing) = try await withSharedRedis { redis, keys in
            try redis.command(["SET", keys("counter"), "41"])
            let incremented = try redis.command(["INCRBY", keys("counter"), "1"])
            try redis.command(["RPUSH", keys("list"), "a", "b", "c"])
            let list = try redis.command(["LRANGE", keys("list"), "0", "-1"])
            let mget = try redis.command(["MGET", keys("counter"), keys("nothing")])
            let nested = try redis.command(["EVAL", "return {1, {'x', {2}}, 'y'}", "0"])
            return (incremented, list, mget, nested, try redis.command(["GET", keys("nothing")]))
        }
        #expect(incremented == .integer(42))
        #expect(list == .array([.string("a"), .string("b"), .string("c")]))
        #expect(mget == .array([.string("42"), .null]))
        #expect(nested == .array([.integer(1), .array([.string("x"), .array([.integer(2)])]), .string("y")]))
        #expect(missing == .null)
    }

    @Test("An error reply throws .server in Redis's words, and the connection goes on working")
    func serverError() async throws {
        let (notInteger, wrongType, unknown, after, connected) = try await withSharedRedis { redis, keys in
            try redis.command(["SET", keys("text"), "abc"])
            return (
                outcome { () throws(RedisError) in try redis.command(["INCR", keys("text")]) },
                outcome { () throws(RedisError) in try redis.command(["LPUSH", keys("text"), "x"]) },
                outcome { () throws(RedisError) in try redis.command(["NOSUCHCOMMAND", "x"]) },
                try redis.command(["GET", keys("text")]),
                redis.isConnected
            )
        }
        #expect(notInteger.error?.kind == .server)
        #expect(notInteger.error?.message == "ERR value is not an integer or out of range")
        #expect(notInteger.error?.serverCode == "ERR")
        #expect(notInteger.error?.isRetryable == false)
        #expect(wrongType.error?.serverCode == "WRONGTYPE")
        #expect(unknown.error?.message.contains("unknown command") == true)
        #expect(after == .string("abc"))
        #expect(connected)
    }

    @Test("A pipeline answers per command, in order, an error reply only failing its own command")
    func pipeline() async throws {
        let results = try await withSharedRedis { redis, keys in
            try redis.pipeline([
                ["SET", keys("p"), "1"],
                ["INCR", keys("p")],
                ["HSET", keys("p"), "f", "v"],
                ["GET", keys("p")],
                ["GET", keys("missing")],
            ])
        }
        #expect(results.count == 5)
        #expect(results[0].value == .status("OK"))
        #expect(results[1].value == .integer(2))
        #expect(results[2].error?.serverCode == "WRONGTYPE")
        #expect(results[3].value == .string("2"))
        #expect(results[4].value == .null)
    }

    @Test("A pipeline of 5,000 commands returns 5,000 replies")
    func longPipeline() async throws {
        let (results, total) = try await withSharedRedis { redis, keys in
            let results = try redis.pipeline((0..<5_000).map { _ in ["INCR", keys("many")] })
            return (results, try redis.command(["GET", keys("many")]))
        }
        #expect(results.count == 5_000)
        #expect(results.last?.value == .integer(5_000))
        #expect(total == .string("5000"))
        #expect(try await withSharedRedis { redis, _ in try redis.pipeline([]) }.isEmpty)
    }

    @Test("The database in the URL is selected")
    func selectsDatabase() async throws {
        let (inDB3, inDB0) = try await onOwnThread {
            let keys = RedisKeySpace("redisclient-test")
            let db3 = try RedisConnection(url: sharedRedisURL + "/3", logger: testLogger)
            let db0 = try RedisConnection(url: sharedRedisURL, logger: testLogger)
            defer {
                try? keys.removeAll(db3)
                try? keys.removeAll(db0)
            }
            try db3.command(["SET", keys("where"), "three"])
            return (try db3.command(["GET", keys("where")]), try db0.command(["GET", keys("where")]))
        }
        #expect(inDB3 == .string("three"))
        #expect(inDB0 == .null)
    }

    @Test("A connection the server closed is replaced before the next command, which succeeds")
    func reconnectsAfterClientKill() async throws {
        let (connectedAfterKill, reply, connectedAgain, newID, oldID) = try await withSharedRedis { redis, keys in
            let oldID = try redis.command(["CLIENT", "ID"])
            let killer = try RedisConnection(url: sharedRedisURL, logger: testLogger)
            try killer.command(["CLIENT", "KILL", "ID", String(oldID.intValue ?? -1)])
            // The kill is done when the reply came; the server closes our socket right then.
            var connected = redis.isConnected
            for _ in 0..<100 where connected {
                usleep(10_000)
                connected = redis.isConnected
            }
            let reply = try redis.command(["SET", keys("after-kill"), "yes"])
            return (connected, reply, redis.isConnected, try redis.command(["CLIENT", "ID"]), oldID)
        }
        #expect(connectedAfterKill == false)
        #expect(reply == .status("OK"))
        #expect(connectedAgain)
        #expect(newID != oldID)
    }

    @Test("close() is idempotent and later calls fail without reconnecting")
    func close() async throws {
        let (connected, afterClose) = try await withSharedRedis { redis, _ in
            redis.close()
            redis.close()
            return (redis.isConnected, outcome { () throws(RedisError) in try redis.command(["PING"]) })
        }
        #expect(connected == false)
        #expect(afterClose.error?.kind == .connectionLost)
        #expect(afterClose.error?.isRetryable == false)
    }

    @Test("An empty command is refused before anything is sent")
    func emptyCommand() async throws {
        let (single, pipelined, ping) = try await withSharedRedis { redis, _ in
            (
                outcome { () throws(RedisError) in try redis.command([]) },
                outcome { () throws(RedisError) in try redis.pipeline([["PING"], []]) },
                try redis.command(["PING"])
            )
        }
        #expect(single.error?.kind == .protocolError)
        #expect(pipelined.error?.kind == .protocolError)
        #expect(ping == .status("PONG"))
    }
}
