import RedisClient
import Testing

/// Takes every key (SET NX PX) or none: on the first key already taken, undoes the ones it set and returns
/// the taken keys. Returns {} when all were taken.
let holdAllScript = RedisScript(
    """
    local taken = {}
    for i, key in ipairs(KEYS) do
      if redis.call('EXISTS', key) == 1 then taken[#taken + 1] = key end
    end
    if #taken > 0 then return taken end
    local set = {}
    for i, key in ipairs(KEYS) do
      if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
        set[#set + 1] = key
      else
        for j, done in ipairs(set) do redis.call('DEL', done) end
        return {key}
      end
    end
    return {}
    """)

/// Deletes KEYS[1] only while it still holds ARGV[1]: the owner's token.
let compareAndDeleteScript = RedisScript(
    """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """)

@Suite("Lua scripts")
struct ScriptTests {
    @Test("A multi-key hold script takes all keys or none")
    func allOrNothing() async throws {
        let observed = try await withSharedRedis { redis, keys in
            let seats = ["A1", "A2", "A3"].map { keys("seat:" + $0) }
            try redis.command(["SET", seats[1], "someone-else"])
            let refused = try redis.run(holdAllScript, keys: seats, arguments: ["hold-1", "60000"])
            let afterRefusal = try redis.command(["MGET"] + seats)
            try redis.command(["DEL", seats[1]])
            let granted = try redis.run(holdAllScript, keys: seats, arguments: ["hold-1", "60000"])
            let afterGrant = try redis.command(["MGET"] + seats)
            let ttl = try redis.command(["PTTL", seats[2]])
            return (seats, refused, afterRefusal, granted, afterGrant, ttl)
        }
        let (seats, refused, afterRefusal, granted, afterGrant, ttl) = observed
        #expect(refused == .array([.string(seats[1])]))
        #expect(afterRefusal == .array([.null, .string("someone-else"), .null]))
        #expect(granted == .array([]))
        #expect(afterGrant == .array([.string("hold-1"), .string("hold-1"), .string("hold-1")]))
        #expect((1...60_000).contains(ttl.intValue ?? -1))
    }

    @Test("Compare-and-delete removes the key only for its owner")
    func compareAndDelete() async throws {
        let (byOther, stillThere, byOwner, gone) = try await withSharedRedis { redis, keys in
            try redis.command(["SET", keys("lock"), "token-a"])
            let byOther = try redis.run(compareAndDeleteScript, keys: [keys("lock")], arguments: ["token-b"])
            let stillThere = try redis.command(["GET", keys("lock")])
            let byOwner = try redis.run(compareAndDeleteScript, keys: [keys("lock")], arguments: ["token-a"])
            return (byOther, stillThere, byOwner, try redis.command(["EXISTS", keys("lock")]))
        }
        #expect(byOther == .integer(0))
        #expect(stillThere == .string("token-a"))
        #expect(byOwner == .integer(1))
        #expect(gone == .integer(0))
    }

    @Test("A script's SHA-1 is the one Redis computes")
    func sha1MatchesRedis() async throws {
        let loaded = try await withSharedRedis { redis, _ in
            try [holdAllScript, compareAndDeleteScript].map { script in
                try redis.command(["SCRIPT", "LOAD", script.source])
            }
        }
        #expect(loaded == [.string(holdAllScript.sha1), .string(compareAndDeleteScript.sha1)])
    }

    @Test("A Lua runtime error throws .server with Redis's message")
    func runtimeError() async throws {
        let script = RedisScript("return redis.call('INCR', KEYS[1])")
        let result = try await withSharedRedis { redis, keys in
            try redis.command(["SET", keys("word"), "not a number"])
            return outcome { () throws(RedisError) in try redis.run(script, keys: [keys("word")], arguments: []) }
        }
        #expect(result.error?.kind == .server)
        #expect(result.error?.message.contains("value is not an integer or out of range") == true)
    }

    @Test("A script that does not compile throws .server naming the compile error")
    func syntaxError() async throws {
        let script = RedisScript("return (")
        let (result, ping) = try await withSharedRedis { redis, _ in
            (
                outcome { () throws(RedisError) in try redis.run(script, keys: [], arguments: []) },
                try redis.command(["PING"])
            )
        }
        #expect(result.error?.kind == .server)
        #expect(result.error?.message.contains("Error compiling script") == true)
        #expect(ping == .status("PONG"))
    }

    @Test("After SCRIPT FLUSH, run falls back to EVAL once and EVALSHA works again after it")
    func evalshaFallback() async throws {
        // SCRIPT FLUSH is global: only on a server of our own.
        let (replies, evalCalls, evalshaCalls) = try await withPrivateServer { server in
            let redis = try RedisConnection(url: server.url, logger: testLogger)
            var replies: [RedisValue] = []
            replies.append(try redis.run(compareAndDeleteScript, keys: ["k"], arguments: ["t"]))  // NOSCRIPT → EVAL
            replies.append(try redis.run(compareAndDeleteScript, keys: ["k"], arguments: ["t"]))  // EVALSHA
            try redis.command(["SCRIPT", "FLUSH"])
            replies.append(try redis.run(compareAndDeleteScript, keys: ["k"], arguments: ["t"]))  // NOSCRIPT → EVAL
            replies.append(try redis.run(compareAndDeleteScript, keys: ["k"], arguments: ["t"]))  // EVALSHA
            let stats = try redis.command(["INFO", "commandstats"]).stringValue ?? ""
            return (replies, calls("eval", in: stats), calls("evalsha", in: stats))
        }
        #expect(replies == Array(repeating: .integer(0), count: 4))
        #expect(evalCalls == 2)
        #expect(evalshaCalls == 4)
    }
}

/// `calls=` of one command in INFO commandstats (`cmdstat_eval:calls=2,usec=...`).
private func calls(_ command: String, in stats: String) -> Int? {
    for line in stats.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_\(command):") {
        let fields = line.dropFirst("cmdstat_\(command):".count).split(separator: ",")
        for field in fields where field.hasPrefix("calls=") { return Int(field.dropFirst("calls=".count)) }
    }
    return nil
}
