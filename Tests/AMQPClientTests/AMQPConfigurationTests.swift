import Testing

@testable import AMQPClient

@Suite("AMQPConfiguration(url:)") struct AMQPConfigurationTests {
    @Test("a full URL gives every part, percent-decoded") func fullURL() throws {
        let configuration = try AMQPConfiguration(url: "amqp://seat%40user:p%3Ass%2Fword@broker.example:5673/inventory")
        #expect(configuration.host == "broker.example")
        #expect(configuration.port == 5673)
        #expect(configuration.user == "seat@user")
        #expect(configuration.password == "p:ss/word")
        #expect(configuration.vhost == "inventory")
        #expect(configuration.heartbeat == .seconds(10))
    }

    @Test("the vhost defaults to / and %2f decodes to /") func vhostDefaults() throws {
        #expect(try AMQPConfiguration(url: "amqp://guest:guest@localhost:5672").vhost == "/")
        #expect(try AMQPConfiguration(url: "amqp://guest:guest@localhost:5672/").vhost == "/")
        #expect(try AMQPConfiguration(url: "amqp://guest:guest@localhost/%2f").vhost == "/")
        #expect(try AMQPConfiguration(url: "amqp://guest:guest@localhost/%2Fshop").vhost == "/shop")
    }

    @Test("without userinfo and port the defaults are guest and 5672") func defaults() throws {
        let configuration = try AMQPConfiguration(url: "amqp://rabbit")
        #expect(configuration.user == "guest")
        #expect(configuration.password == "guest")
        #expect(configuration.port == 5672)
        #expect(configuration.host == "rabbit")
    }

    @Test("an IPv6 host in brackets and the heartbeat and connection_timeout parameters are read") func ipv6AndQuery()
        throws
    {
        let configuration = try AMQPConfiguration(url: "amqp://u:p@[::1]:5999/v?heartbeat=3&connection_timeout=250")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 5999)
        #expect(configuration.heartbeat == .seconds(3))
        #expect(configuration.connectTimeout == .milliseconds(250))
    }

    @Test("the description never shows the password") func redaction() throws {
        let configuration = try AMQPConfiguration(url: "amqp://app:s3cr%2Et@rabbit:5672/%2f")
        #expect(!configuration.description.contains("s3cr"))
        #expect(configuration.description == "amqp://app:***@rabbit:5672/")
        #expect(!"\(configuration)".contains("s3cr.t"))
        #expect(!String(reflecting: configuration).contains("s3cr.t"))
        var dumped = ""
        dump(configuration, to: &dumped)
        #expect(!dumped.contains("s3cr.t"))
        #expect(dumped.contains("***"))
    }

    @Test(
        "bad URLs are rejected with invalidURL",
        arguments: [
            "http://guest:guest@localhost:5672/", "amqps://localhost", "amqp://", "amqp://guest:guest@:5672/",
            "amqp://localhost:0", "amqp://localhost:70000", "amqp://localhost:abc", "amqp://localhost/a%zz",
            "amqp://localhost/a/b", "amqp://[::1/", "amqp://:pw@localhost",
        ])
    func badURLs(url: String) {
        let error = #expect(throws: AMQPError.self) { try AMQPConfiguration(url: url) }
        #expect(error?.kind == .invalidURL)
        #expect(error?.isRetryable == false)
    }

    @Test("an invalid URL's error does not echo the password") func errorRedaction() {
        let error = #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "amqp://u:topsecret@host:99999/") }
        #expect(error.map { !$0.description.contains("topsecret") } == true)
    }
}
