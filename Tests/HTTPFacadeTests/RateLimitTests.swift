import Dispatch
import Foundation
import HTTPFacade
import Logging
import RedisClient
import ServiceSupport
import Synchronization
import TestSupport
import Testing

@testable import HTTPFacade

@Suite("Rate limit parts: client address, address ranges, the 429 fields")
struct RateLimitUnitTests {
    @Test("the client address is the peer, or the nearest untrusted X-Forwarded-For entry behind a trusted proxy")
    func clientAddress() throws {
        let trusted = [try #require(AddressRange("10.0.0.0/8")), try #require(AddressRange("::1"))]
        #expect(ClientAddress.resolve(peer: "203.0.113.9", forwardedFor: "1.2.3.4", trusted: trusted) == "203.0.113.9")
        #expect(ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: "1.2.3.4", trusted: trusted) == "1.2.3.4")
        #expect(
            ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: "6.6.6.6, 1.2.3.4, 10.9.9.9", trusted: trusted)
                == "1.2.3.4",
            "a client-supplied entry on the left is never believed"
        )
        #expect(ClientAddress.resolve(peer: "::1", forwardedFor: "10.0.0.1, 10.0.0.2", trusted: trusted) == "10.0.0.1")
        #expect(ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: nil, trusted: trusted) == "10.1.2.3")
        #expect(ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: "1.2.3.4", trusted: []) == "10.1.2.3")
    }

    @Test("address ranges: IPv4, IPv6, CIDR, mapped IPv4; garbage is refused")
    func ranges() throws {
        let v4 = try #require(AddressRange("192.168.0.0/16"))
        #expect(v4.contains("192.168.4.5"))
        #expect(v4.contains("::ffff:192.168.4.5"))
        #expect(!v4.contains("192.169.0.1"))
        #expect(!v4.contains("not an address"))
        let v6 = try #require(AddressRange("fd00::/8"))
        #expect(v6.contains("fd12::1"))
        #expect(!v6.contains("fe80::1"))
        #expect(try #require(AddressRange("127.0.0.1")).contains("127.0.0.1"))
        #expect(!(try #require(AddressRange("127.0.0.1")).contains("127.0.0.2")))
        #expect(AddressRange("10.0.0.0/33") == nil)
        #expect(AddressRange("example.com") == nil)
    }

    @Test("TRUSTED_PROXIES and the RATE_LIMIT_ and HTTP_ variables parse, and bad values name the variable")
    func configuration() async throws {
        let parsed = try await ServiceConfiguration.load(
            environment: [
                "TRUSTED_PROXIES": "10.0.0.0/8, ::1", "RATE_LIMIT_USER_WRITES": "5", "RATE_LIMIT_ENABLED": "false",
                "HTTP_MAX_CONNECTIONS_PER_ADDRESS": "7",
            ],
            directory: NSTemporaryDirectory()
        )
        #expect(parsed.edge.trustedProxies.map(\.text) == ["10.0.0.0/8", "::1"])
        #expect(parsed.edge.userWrites == 5)
        #expect(!parsed.edge.rateLimitEnabled)
        #expect(parsed.edge.maxConnectionsPerAddress == 7)
        #expect(parsed.edge.addressReads == EdgeSettings().addressReads)
        await #expect(throws: ConfigurationError.self) {
            _ = try await ServiceConfiguration.load(
                environment: ["TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"],
                directory: NSTemporaryDirectory()
            )
        }
    }

    @Test("the script's answer becomes a decision; anything malformed lets the request through")
    func decisions() {
        let user = RatePolicy(name: "user-write", quota: 30, windowSeconds: 10)
        let address = RatePolicy(name: "address-write", quota: 300, windowSeconds: 10)
        let check = RateCheck(items: [("a", address), ("u", user)])
        #expect(
            RateLimiter.decision(.array([.integer(1), .integer(0), .integer(0), .integer(0)]), check: check) == .allowed
        )
        #expect(
            RateLimiter.decision(.array([.integer(0), .integer(2), .integer(1_200), .integer(9_001)]), check: check)
                == .limited(policy: user, retryAfterSeconds: 2, resetSeconds: 10)
        )
        #expect(
            RateLimiter.decision(.array([.integer(0), .integer(3), .integer(1), .integer(1)]), check: check)
                == .failedOpen
        )
        #expect(RateLimiter.decision(.string("OK"), check: check) == .failedOpen)
    }

    @Test("a limiter stopped before it started lets what was queued through and does not hang")
    func stopWithoutStart() {
        let limiter = RateLimiter(redisURL: "redis://127.0.0.1:1", logger: Logger(label: "test"))
        let decided = Mutex<[RateDecision]>([])
        limiter.check(RateCheck(items: [])) { decision in decided.withLock { $0.append(decision) } }
        limiter.stop()
        #expect(decided.withLock { $0 } == [.failedOpen])
    }

    @Test("a 429 carries Retry-After and the draft-10 RateLimit-Policy / RateLimit fields")
    func limitedAnswer() {
        let policy = RatePolicy(name: "user-write", quota: 30, windowSeconds: 10)
        let answer = RatePolicies.limitedAnswer(policy: policy, retryAfterSeconds: 1, resetSeconds: 10)
        #expect(answer.status == 429)
        let headers = Dictionary(answer.headers, uniquingKeysWith: { first, _ in first })
        #expect(headers["Retry-After"] == "1")
        #expect(headers["RateLimit-Policy"] == #""user-write";q=30;w=10"#)
        #expect(headers["RateLimit"] == #""user-write";r=0;t=10"#)
        #expect(String(decoding: answer.body, as: UTF8.self).contains(#""code":"RATE_LIMITED""#))
    }
}

/// A request's outcome as the limiter sees it: limited or not.
private func isLimited(_ response: TestResponse) -> Bool { response.status == 429 }

@Suite("Rate limits against the real Redis", .serialized)
struct RateLimitTests {
    @Test("two facade processes sharing Redis keep the combined rate within one budget")
    func twoProcesses() async throws {
        try await blocking {
            let vhost = ScratchVhost(name: "test-\(uniqueName("ratelimit"))")
            try vhost.create()
            defer { try? vhost.delete() }
            let keys = RedisKeySpace("ratelimit")
            let prefix = keys.prefix
            let environment = [
                "RABBITMQ_URL": vhost.url, "REDIS_URL": "redis://localhost:6379", "PORT": "0", "FACADE_OPS_PORT": "0",
                "JWT_SECRET": Stack.jwtSecret, "RATE_LIMIT_KEY_PREFIX": prefix,
                "RATE_LIMIT_ADDRESS_READS": "20", "RATE_LIMIT_WINDOW_SECONDS": "3600",
            ]
            let facades = try (0..<2).map { _ in try ServerProcess(product: "http-facade", environment: environment) }
            defer { for facade in facades { facade.stop() } }
            let ports = try facades.map { try $0.waitForNumber(after: "Inventory service running on port ") }
            // 60 requests at once, 30 to each process.
            let outcomes = Mutex<[TestResponse]>([])
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 60) { index in
                do {
                    let response = try HTTPTestClient.request(
                        port: ports[index % 2],
                        "GET",
                        "/availability?showtimeId=st-\(index)"
                    )
                    outcomes.withLock { $0.append(response) }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
            #expect(failures.withLock { $0 }.isEmpty)
            let responses = outcomes.withLock { $0 }
            let limitedResponses = responses.filter(isLimited)
            let passed = responses.count - limitedResponses.count
            let limited = limitedResponses.count
            for response in limitedResponses {
                #expect(response.errorCode == "RATE_LIMITED")
                #expect(Int(response.header("retry-after") ?? "") ?? 0 >= 1)
                #expect(response.header("ratelimit-policy") == #""address-read";q=20;w=3600"#)
            }
            print("two facades, one budget of 20 per hour: \(passed) passed, \(limited) limited")
            // The quota refills one request every 180 s: within the test exactly the quota passes.
            #expect(passed == 20)
            #expect(limited == 40)
            let redis = try RedisConnection(url: "redis://localhost:6379", logger: fixtureLogger)
            defer { redis.close() }
            try keys.removeAll(redis)
        }
    }

    @Test("a well-behaved client that waits Retry-After is then served")
    func retryAfterHonoured() async throws {
        let keys = RedisKeySpace("ratelimit")
        let prefix = keys.prefix
        try await blocking {
            let stack = Stack()
            stack.edge.rateLimitEnabled = true
            stack.edge.rateLimitKeyPrefix = prefix
            stack.edge.addressReads = 2
            stack.edge.rateLimitWindowSeconds = 2
            defer { stack.close() }
            try stack.start()
            let showtime = try stack.showtime(seats: 3)
            var response = try stack.request("GET", "/availability?showtimeId=\(showtime)", token: nil)
            var attempts = 1
            while !isLimited(response) && attempts < 20 {
                #expect(response.status == 200)
                response = try stack.request("GET", "/availability?showtimeId=\(showtime)", token: nil)
                attempts += 1
            }
            #expect(isLimited(response), "the budget of 2 per 2 s ran out")
            let retryAfter = try #require(Int(response.header("retry-after") ?? ""))
            #expect((1...2).contains(retryAfter))
            #expect(response.header("ratelimit")?.hasPrefix(#""address-read";r=0;t="#) == true)
            #expect(response.header("ratelimit-policy") == #""address-read";q=2;w=2"#)
            // The client does what Retry-After says, then tries again.
            usleep(UInt32(retryAfter) * 1_000_000)
            let again = try stack.request("GET", "/availability?showtimeId=\(showtime)", token: nil)
            #expect(again.status == 200, "\(again.status) \(again.text)")
            let redis = try RedisConnection(url: "redis://localhost:6379", logger: fixtureLogger)
            defer { redis.close() }
            try keys.removeAll(redis)
        }
    }

    @Test("with Redis stopped the limiter fails open, counts it, logs it once, and enforces again when Redis is back")
    func failOpen() async throws {
        try await blocking {
            let redis = try PrivateRedisServer()
            let stack = Stack()
            stack.edge.rateLimitEnabled = true
            stack.edge.addressReads = 1
            stack.edge.rateLimitWindowSeconds = 3600
            stack.redisURL = redis.url
            defer { stack.close() }
            try stack.createVhost()
            try stack.startFacade()
            let port = stack.port
            func get() throws -> TestResponse {
                try HTTPTestClient.request(port: port, "GET", "/availability?showtimeId=st1")
            }
            #expect(!isLimited(try get()))
            #expect(isLimited(try get()), "the quota of 1 is spent")

            redis.stop()
            for _ in 0..<10 {
                #expect(!isLimited(try get()), "Redis away: the request goes through")
            }
            let failLines = stack.logs.all.filter { $0.contains("rate limiter fails open") }
            #expect(failLines.count == 1, "logged once per state change: \(failLines)")
            let metrics = try stack.metrics().text
            let failOpen = metrics.split(separator: "\n").first { $0.hasPrefix("facade_rate_limit_fail_open_total") }
            #expect(Double(failOpen?.split(separator: " ").last ?? "") ?? 0 >= 10, "\(failOpen ?? "no metric")")

            try redis.start()
            // Reconnection is tried at most once a second: poll (bounded) until enforcement is back.
            let deadline = ContinuousClock.now + .seconds(15)
            var limitedAgain = false
            while ContinuousClock.now < deadline && !limitedAgain {
                limitedAgain = isLimited(try get())
                if !limitedAgain { usleep(100_000) }
            }
            #expect(limitedAgain, "the quota is enforced again once Redis is back")
            #expect(stack.logs.all.filter { $0.contains("rate limiter enforcing again") }.count == 1)
        }
    }
}
