import Foundation
import RedisClient
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Sentinel URLs")
struct SentinelURLTests {
    @Test("redis-sentinel:// lists the Sentinels, names the master, and keeps the master's password and database")
    func fullURL() throws {
        let configuration = try RedisConfiguration(
            url: "redis-sentinel://:s3cret@10.0.0.1:26380,10.0.0.2,[::1]:26381/seat-inventory/2"
        )
        #expect(
            configuration.sentinels == [
                RedisEndpoint(host: "10.0.0.1", port: 26380), RedisEndpoint(host: "10.0.0.2", port: 26379),
                RedisEndpoint(host: "::1", port: 26381),
            ]
        )
        #expect(configuration.masterName == "seat-inventory")
        #expect(configuration.password == "s3cret")
        #expect(configuration.database == 2)
        #expect(
            configuration.description
                == "redis-sentinel://:***@10.0.0.1:26380,10.0.0.2:26379,[::1]:26381/seat-inventory/2"
        )
    }

    @Test("A Sentinel URL without a master name, with an empty address or a Sentinel twice is refused")
    func refused() {
        for url in [
            "redis-sentinel://127.0.0.1:26379", "redis-sentinel://127.0.0.1:26379/",
            "redis-sentinel://127.0.0.1:26379,,127.0.0.1:26380/m", "redis-sentinel://h:1,h:1/m",
            "redis-sentinel://h:1/m/x", "redis-sentinel://h:99999/m",
        ] {
            #expect(throws: RedisError.self, "\(url)") { try RedisConfiguration(url: url) }
        }
    }

    @Test("A plain redis:// URL has no Sentinels")
    func plain() throws {
        let configuration = try RedisConfiguration(url: "redis://127.0.0.1:6379")
        #expect(configuration.sentinels.isEmpty)
        #expect(configuration.masterName == nil)
    }
}

/// A master, its replica and one Sentinel, all private: the connection follows the master through a failover.
@Suite("Following the Sentinel's master, on private servers")
struct SentinelFailoverTests {
    @Test("The connection finds the master through the Sentinels (a dead one first) and follows it after a failover")
    func followsFailover() async throws {
        let (before, after, value) = try await onOwnThread { () throws -> (Int?, Int?, String?) in
            let master = try PrivateRedisServer()
            let replica = try PrivateRedisServer()
            defer {
                master.stop()
                replica.stop()
            }
            try replica.command(["REPLICAOF", "127.0.0.1", "\(master.port)"])
            try waitUntil("the replica is linked") {
                (try? replica.command(["INFO", "replication"]).stringValue)?.contains("master_link_status:up") == true
            }
            let sentinel = try PrivateSentinel(masterPort: master.port)
            defer { sentinel.stop() }
            // Promotable: the Sentinel has the replica's own INFO, which says its link to the master is up.
            try waitUntil("the Sentinel sees the replica linked") {
                let replicas = try? sentinel.command(["SENTINEL", "REPLICAS", PrivateSentinel.masterName]).arrayValue
                return replicas?.contains { replica in
                    let fields = replica.arrayValue?.compactMap(\.stringValue) ?? []
                    guard let index = fields.firstIndex(of: "master-link-status"), index + 1 < fields.count else {
                        return false
                    }
                    return fields[index + 1] == "ok"
                } == true
            }

            let dead = try freePort()
            let url = "redis-sentinel://127.0.0.1:\(dead),127.0.0.1:\(sentinel.port)/\(PrivateSentinel.masterName)"
            let connection = try RedisConnection(url: url, commandTimeout: .seconds(2), logger: testLogger)
            defer { connection.close() }
            let before = try Self.port(of: connection)
            try connection.command(["SET", "sentinel-test", "written before the failover"])
            try waitUntil("the write reached the replica") {
                (try? replica.command(["GET", "sentinel-test"]).stringValue) != nil
            }

            try sentinel.command(["SENTINEL", "FAILOVER", PrivateSentinel.masterName])
            try waitUntil("the Sentinel names the replica as master", timeout: .seconds(30)) {
                let answer = try? sentinel.command(["SENTINEL", "get-master-addr-by-name", PrivateSentinel.masterName])
                return answer?.arrayValue?.last?.intValue == replica.port
                    && (try? replica.command(["ROLE"]).arrayValue?.first?.stringValue) == "master"
            }
            // The old master is demoted (the Sentinel closes its clients); the next calls reach the new one.
            var after: Int?
            try waitUntil("a write succeeds on the new master", timeout: .seconds(30)) {
                guard (try? connection.command(["SET", "sentinel-test-after", "x"])) != nil else { return false }
                after = try? Self.port(of: connection)
                return after == replica.port
            }
            let value = try connection.command(["GET", "sentinel-test"]).stringValue
            return (before, after, value)
        }
        #expect(before != nil)
        #expect(after != nil)
        #expect(before != after)
        #expect(value == "written before the failover")
    }

    @Test("Only dead Sentinels: connectionFailed, retryable, naming each")
    func noSentinel() async throws {
        let result = try await onOwnThread {
            let (first, second) = (try freePort(), try freePort())
            return outcome { () throws(RedisError) in
                try RedisConnection(
                    url: "redis-sentinel://127.0.0.1:\(first),127.0.0.1:\(second)/m",
                    logger: testLogger
                )
            }.map { _ in () }
        }
        #expect(result.error?.kind == .connectionFailed)
        #expect(result.error?.isRetryable == true)
        #expect(result.error?.message.contains("Sentinel 127.0.0.1:") == true)
    }

    private static func port(of connection: RedisConnection) throws -> Int? {
        try connection.command(["CONFIG", "GET", "port"]).arrayValue?.last?.intValue
    }
}

/// A bounded poll, for what has no event to await (replication links, a Sentinel's view).
private func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + timeout
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting until \(what)") }
        usleep(50_000)
    }
}

/// One Sentinel (`redis-server --sentinel`) of the test's own, watching `masterPort` (quorum 1), killed when the test ends.
private final class PrivateSentinel {
    static let masterName = "sentinel-test"
    let port: Int
    private let child: ChildProcess
    private let directory: String

    init(masterPort: Int) throws {
        port = try freePort()
        directory = NSTemporaryDirectory() + "sentinel-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = """
            bind 127.0.0.1
            port \(port)
            dir \(directory)
            sentinel monitor \(Self.masterName) 127.0.0.1 \(masterPort) 1
            sentinel down-after-milliseconds \(Self.masterName) 1000
            sentinel failover-timeout \(Self.masterName) 5000

            """
        let path = directory + "/sentinel.conf"
        try configuration.write(toFile: path, atomically: true, encoding: .utf8)
        // redis-server in Sentinel mode: the `redis-sentinel` command is a Debian package of its own, which
        // scripts/services.sh does not install (scripts/cluster.sh does); the server binary is the same.
        child = try ChildProcess("/usr/bin/redis-server", [path, "--sentinel"])
        try waitUntil("the Sentinel listens") { acceptsConnections(port: port) }
    }

    func stop() {
        child.signal(SIGKILL)
        _ = child.wait()
        try? FileManager.default.removeItem(atPath: directory)
    }

    @discardableResult
    func command(_ arguments: [String]) throws -> RedisValue {
        let connection = try RedisConnection(url: "redis://127.0.0.1:\(port)", logger: testLogger)
        defer { connection.close() }
        return try connection.command(arguments)
    }
}
