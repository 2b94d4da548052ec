import Testing

@testable import RedisClient

@Suite("Redis URLs")
struct ConfigurationTests {
    @Test("A full URL gives user, password, host, port and database")
    func fullURL() throws {
        let configuration = try RedisConfiguration(url: "redis://app:s3cret@cache.internal:6380/4")
        #expect(
            configuration
                == RedisConfiguration(
                    host: "cache.internal", port: 6380, user: "app",
                    password: "s3cret", database: 4))
    }

    @Test("A bare host gets port 6379, database 0 and no credentials")
    func defaults() throws {
        let configuration = try RedisConfiguration(url: "redis://localhost")
        #expect(configuration == RedisConfiguration(host: "localhost", port: 6379))
        #expect(try RedisConfiguration(url: "redis://localhost:6379/").database == 0)
    }

    @Test("The password-only form leaves the user empty")
    func passwordOnly() throws {
        let configuration = try RedisConfiguration(url: "redis://:pw@127.0.0.1:6391")
        #expect(configuration.user == nil)
        #expect(configuration.password == "pw")
        #expect(configuration.port == 6391)
    }

    @Test("Percent-encoded credentials are decoded, and an @ in the password is allowed")
    func percentEncoding() throws {
        let configuration = try RedisConfiguration(url: "redis://u%40x:p%3Aw%2Fd@h:1")
        #expect(configuration.user == "u@x")
        #expect(configuration.password == "p:w/d")
        #expect(try RedisConfiguration(url: "redis://:a@b@h").password == "a@b")
    }

    @Test("An IPv6 host is written in brackets")
    func ipv6() throws {
        let configuration = try RedisConfiguration(url: "redis://[::1]:6390/2")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 6390)
        #expect(configuration.database == 2)
        #expect(configuration.description == "redis://[::1]:6390/2")
    }

    @Test("rediss:// is refused with a clear word about TLS")
    func tlsRefused() {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: "rediss://h:6380") }
        #expect(error?.kind == .invalidURL)
        #expect(error?.message.contains("TLS") == true)
        #expect(error?.isRetryable == false)
    }

    @Test(
        "Malformed URLs are invalidURL and never echo the password",
        arguments: [
            "localhost:6379", "http://h", "redis://", "redis://:hunter2@", "redis://:hunter2@h:0",
            "redis://:hunter2@h:70000", "redis://:hunter2@h:port", "redis://:hunter2@h/x", "redis://:hunter2@h/-1",
            "redis://:hunter2@[::1", "redis://:hunter2@h?db=1", "redis://:hun%zzter2@h",
        ])
    func malformed(url: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        #expect(error?.kind == .invalidURL)
        #expect(error?.description.contains("hunter2") == false)
    }

    @Test("The description hides the password")
    func descriptionHidesPassword() throws {
        let configuration = try RedisConfiguration(url: "redis://app:hunter2@h:6379/1")
        #expect(configuration.description == "redis://app:***@h:6379/1")
        #expect(try RedisConfiguration(url: "redis://h").description == "redis://h:6379")
    }
}

@Suite("SHA-1 of scripts")
struct SHA1Tests {
    @Test(
        "SHA-1 matches the FIPS 180 test vectors",
        arguments: [
            ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
            ("The quick brown fox jumps over the lazy dog", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"),
        ])
    func vectors(input: String, expected: String) {
        #expect(SHA1.hexDigest(input) == expected)
    }

    @Test("SHA-1 of a million a's, across many blocks")
    func longInput() {
        #expect(SHA1.hexDigest(String(repeating: "a", count: 1_000_000)) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    @Test("Message lengths around the padding boundary hash like the reference")
    func paddingBoundary() {
        // 55, 56 and 64 bytes: one block, two blocks, and an exact block plus padding.
        #expect(SHA1.hexDigest(String(repeating: "a", count: 55)) == "c1c8bbdc22796e28c0e15163d20899b65621d65a")
        #expect(SHA1.hexDigest(String(repeating: "a", count: 56)) == "c2db330f6083854c99d4b5bfb6e8f29f201be699")
        #expect(SHA1.hexDigest(String(repeating: "a", count: 64)) == "0098ba824b5c16427bd7a1122a5a442a25ec644d")
    }
}
