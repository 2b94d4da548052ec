import Foundation
import HTTPServer
import Logging
import ServiceSupport
import TestSupport
import Testing

@testable import HTTPFacade

#if canImport(Glibc)
import Glibc
#endif

/// The seat map page's files and the development token endpoint (issue 17, decision 0020).
@Suite("Seat map page: static files and development tokens") struct WebPageTests {
    /// A facade with `web` in this process. Static files and token minting need no core: its RPC client
    /// connects to the default vhost in the background and is never asked anything here.
    static func withFacade<T: Sendable>(
        web: WebSettings,
        _ body: @escaping @Sendable (Facade) throws -> T
    ) async throws -> T {
        try await blocking {
            var configuration = ServiceConfiguration.defaults
            configuration.port = 0
            configuration.facadeOpsPort = 0
            configuration.auth = AuthSettings(
                mode: .jwt,
                jwtSecret: Stack.jwtSecret,
                jwtIssuer: Stack.issuer,
                jwtAudience: Stack.audience
            )
            configuration.edge.rateLimitEnabled = false
            MetricsSetup.bootstrap()
            let facade = try Facade(
                configuration: configuration,
                web: web,
                logger: Logger(label: "web-page-test") { _ in SwiftLogNoOpLogHandler() }
            )
            defer { facade.shutdown() }
            return try body(facade)
        }
    }

    /// A page directory in the temporary directory, with a secret beside it, a dot file, and a symbolic
    /// link out of it: none of those may ever be served.
    static func makeWebRoot() throws -> (root: String, parent: String) {
        let parent = NSTemporaryDirectory() + uniqueName("webroot")
        let root = parent + "/web"
        let manager = FileManager.default
        try manager.createDirectory(atPath: root + "/js", withIntermediateDirectories: true)
        try "<!doctype html><title>t</title>".write(toFile: root + "/index.html", atomically: true, encoding: .utf8)
        try "export const x = 1;".write(toFile: root + "/js/app.js", atomically: true, encoding: .utf8)
        try "body{}".write(toFile: root + "/style.css", atomically: true, encoding: .utf8)
        try "JWT_SECRET=hidden".write(toFile: root + "/.env", atomically: true, encoding: .utf8)
        try "not for the web".write(toFile: parent + "/secret.txt", atomically: true, encoding: .utf8)
        try "binary?".write(toFile: root + "/notes.unknownext", atomically: true, encoding: .utf8)
        try manager.createSymbolicLink(atPath: root + "/passwd.txt", withDestinationPath: "/etc/passwd")
        try manager.createSymbolicLink(atPath: root + "/outside", withDestinationPath: parent)
        return (root, parent)
    }

    @Test("the page's files are served at / and their paths with their content types and a CSP")
    func servesFiles() async throws {
        let (root, parent) = try Self.makeWebRoot()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        try await Self.withFacade(web: WebSettings(root: root)) { facade in
            let index = try HTTPTestClient.request(port: facade.port, "GET", "/")
            #expect(index.status == 200)
            #expect(index.header("Content-Type") == "text/html; charset=utf-8")
            #expect(index.text.contains("<title>t</title>"))
            #expect(index.header("Content-Security-Policy")?.contains("script-src 'self'") == true)
            #expect(index.header("X-Content-Type-Options") == "nosniff")
            let same = try HTTPTestClient.request(port: facade.port, "GET", "/index.html")
            #expect(same.status == 200 && same.body == index.body)
            let script = try HTTPTestClient.request(port: facade.port, "GET", "/js/app.js")
            #expect(script.status == 200)
            #expect(script.header("Content-Type") == "text/javascript; charset=utf-8")
            let style = try HTTPTestClient.request(port: facade.port, "GET", "/style.css")
            #expect(style.header("Content-Type") == "text/css; charset=utf-8")
            // The REST routes are untouched.
            let health = try HTTPTestClient.request(port: facade.port, "GET", "/healthz")
            #expect(health.status == 200 && health.text == #"{"status":"ok"}"#)
            let wrong = try HTTPTestClient.request(port: facade.port, "POST", "/index.html", body: "{}")
            #expect(wrong.status == 405 && wrong.errorCode == "METHOD_NOT_ALLOWED")
            #expect(wrong.header("Allow") == "GET, HEAD")
        }
    }

    @Test(
        "nothing outside the page's files is served: /../, %2e%2e, //, dot files, symbolic links and unknown types are 404 JSON"
    )
    func noTraversal() async throws {
        let (root, parent) = try Self.makeWebRoot()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        try await Self.withFacade(web: WebSettings(root: root)) { facade in
            let targets = [
                "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/js/../../secret.txt",
                "/js/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt", "//etc/passwd", "/./index.html",
                "/js/./app.js", "/js//app.js", "/.env", "/%2eenv", "/passwd.txt", "/outside/secret.txt",
                "/notes.unknownext", "/etc/passwd", "/js/", "/js", "/index.html/", "/INDEX.HTML",
                "/index.html%00.js", "/..", "/.",
            ]
            for target in targets {
                let response = try HTTPTestClient.request(port: facade.port, "GET", target)
                #expect([404, 400].contains(response.status), "\(target): \(response.status) \(response.text)")
                #expect(response.header("Content-Type") == "application/json", "\(target)")
                #expect(response.errorCode == "NOT_FOUND" || response.errorCode == "VALIDATION_FAILED", "\(target)")
                #expect(!response.text.contains("root:") && !response.text.contains("not for the web"), "\(target)")
                #expect(!response.text.contains("hidden"), "\(target)")
            }
        }
    }

    @Test("the table of servable paths: safe segments only")
    func servablePaths() {
        for path in ["/index.html", "/js/app.js", "/a-b_c.1.css"] { #expect(StaticFiles.isServable(path), "\(path)") }
        for path in ["/", "/../x", "/./x", "/.env", "//x", "/x/", "/a b.js", "/é.js", "x.js", "/js/..", "/a\\b.js"] {
            #expect(!StaticFiles.isServable(path), "\(path)")
        }
        #expect(StaticFiles.contentType(of: "/a.JS") == "text/javascript; charset=utf-8")
        #expect(StaticFiles.contentType(of: "/a.exe") == nil)
        #expect(StaticFiles.contentType(of: "/js.d/app") == nil)
    }

    @Test("by default there is no token endpoint: POST /dev/token is 404, and so is / without a page")
    func offByDefault() async throws {
        let directory = NSTemporaryDirectory() + uniqueName("webcfg")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The process's default configuration: nothing set anywhere.
        let defaults = try WebSettings.load(environment: [:], directory: directory)
        #expect(defaults.devTokenEndpoint == false)
        #expect(defaults.root == directory + "/web")
        try await Self.withFacade(web: defaults) { facade in
            let response = try HTTPTestClient.request(
                port: facade.port,
                "POST",
                "/dev/token",
                body: #"{"userId":"user_456"}"#
            )
            #expect(response.status == 404 && response.errorCode == "NOT_FOUND", "\(response.text)")
            let page = try HTTPTestClient.request(port: facade.port, "GET", "/")
            #expect(page.status == 404 && page.errorCode == "NOT_FOUND")
        }
    }

    @Test("DEV_TOKEN_ENDPOINT and DEV_TOKEN_TTL_SECONDS parse, or name themselves")
    func settings() throws {
        let directory = NSTemporaryDirectory()
        let on = try WebSettings.load(
            environment: ["DEV_TOKEN_ENDPOINT": "true", "DEV_TOKEN_TTL_SECONDS": "120", "WEB_ROOT": "/srv/page"],
            directory: directory
        )
        #expect(on.devTokenEndpoint && on.devTokenTTLSeconds == 120 && on.root == "/srv/page")
        // .env.local, then .env, fill what the environment leaves unset; the environment wins.
        let files = NSTemporaryDirectory() + uniqueName("webenv")
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: files) }
        try "# local\nexport DEV_TOKEN_ENDPOINT='true'\nWEB_ROOT=page\n".write(
            toFile: files + "/.env.local",
            atomically: true,
            encoding: .utf8
        )
        try "DEV_TOKEN_ENDPOINT=false\nDEV_TOKEN_TTL_SECONDS=\"300\"\n".write(
            toFile: files + "/.env",
            atomically: true,
            encoding: .utf8
        )
        let fromFiles = try WebSettings.load(environment: [:], directory: files)
        #expect(fromFiles.devTokenEndpoint && fromFiles.devTokenTTLSeconds == 300 && fromFiles.root == files + "/page")
        let overridden = try WebSettings.load(environment: ["DEV_TOKEN_ENDPOINT": "false"], directory: files)
        #expect(!overridden.devTokenEndpoint)
        #expect(throws: ConfigurationError.self) {
            try WebSettings.load(environment: ["DEV_TOKEN_ENDPOINT": "maybe"], directory: directory)
        }
        do {
            _ = try WebSettings.load(environment: ["DEV_TOKEN_TTL_SECONDS": "86400"], directory: directory)
            Issue.record("a TTL of a day was taken")
        } catch {
            #expect(error.variable == "DEV_TOKEN_TTL_SECONDS")
        }
    }

    @Test("the token endpoint mints a scope-less, short token for a loopback caller")
    func mintsForLoopback() async throws {
        try await Self.withFacade(web: WebSettings(devTokenEndpoint: true, devTokenTTLSeconds: 300)) { facade in
            let response = try HTTPTestClient.request(
                port: facade.port,
                "POST",
                "/dev/token",
                body: #"{"userId":"user_456"}"#
            )
            #expect(response.status == 200, "\(response.text)")
            #expect(response.header("Cache-Control") == "no-store")
            #expect(response.header("Access-Control-Allow-Origin") == nil)
            let token = try #require(response.json["token"] as? String)
            #expect(response.json["userId"] as? String == "user_456")
            let claims = try Self.claims(token)
            #expect(claims["sub"] as? String == "user_456")
            #expect(claims["scope"] == nil)
            #expect(claims["iss"] as? String == Stack.issuer)
            let issued = try #require(claims["iat"] as? Int)
            let expires = try #require(claims["exp"] as? Int)
            #expect(expires - issued == 300)
            // Bad bodies are 400 and mint nothing.
            for body in ["{}", #"{"userId":""}"#, #"{"userId":"a b"}"#, "not json"] {
                let refused = try HTTPTestClient.request(port: facade.port, "POST", "/dev/token", body: body)
                #expect(refused.status == 400 && refused.errorCode == "VALIDATION_FAILED", "\(body): \(refused.text)")
            }
            let get = try HTTPTestClient.request(port: facade.port, "GET", "/dev/token")
            #expect(get.status == 405 && get.header("Allow") == "POST")
        }
    }

    @Test("the facade accepts the minted token and it carries no scope: an admin route is 403")
    func tokenWorks() async throws {
        try await withStack { stack in
            var configuration = ServiceConfiguration.defaults
            configuration.rabbitMQURL = stack.rabbitMQURL
            configuration.port = 0
            configuration.facadeOpsPort = 0
            configuration.auth = AuthSettings(
                mode: .jwt,
                jwtSecret: Stack.jwtSecret,
                jwtIssuer: Stack.issuer,
                jwtAudience: Stack.audience
            )
            configuration.edge = stack.edge
            let facade = try Facade(
                configuration: configuration,
                web: WebSettings(devTokenEndpoint: true),
                logger: stack.logs.logger(label: "web-facade")
            )
            defer { facade.shutdown() }
            let deadline = ContinuousClock.now + .seconds(30)
            while (try? HTTPTestClient.request(port: facade.port, "GET", "/readyz").status) != 200,
                ContinuousClock.now < deadline
            {
                usleep(100_000)
            }
            let minted = try HTTPTestClient.request(
                port: facade.port,
                "POST",
                "/dev/token",
                body: #"{"userId":"user_456"}"#
            )
            let token = try #require(minted.json["token"] as? String)
            let release = try HTTPTestClient.request(
                port: facade.port,
                "POST",
                "/release",
                headers: [("Authorization", "Bearer \(token)")],
                body: #"{"holdId":"h_nope"}"#
            )
            #expect(release.status == 404 && release.errorCode == "HOLD_NOT_FOUND", "\(release.text)")
            let admin = try HTTPTestClient.request(
                port: facade.port,
                "PUT",
                "/showtimes/st1/seats",
                headers: [("Authorization", "Bearer \(token)")],
                body: #"{"seatIds":["A1"]}"#
            )
            #expect(admin.status == 403 && admin.errorCode == "FORBIDDEN", "\(admin.text)")
        }
    }

    @Test(
        "the token endpoint refuses callers that are not this host: another address, a forwarding header, a foreign Host or Origin"
    )
    func refusesOthers() async throws {
        let external = try #require(Self.nonLoopbackAddress(), "this test needs a non-loopback IPv4 address")
        try await Self.withFacade(web: WebSettings(devTokenEndpoint: true)) { facade in
            let body = #"{"userId":"user_456"}"#
            // The machine's own non-loopback address: the TCP peer is then that address.
            let remote = try Self.request(to: external, port: facade.port, "POST", "/dev/token", body: body)
            #expect(remote.status == 403 && remote.errorCode == "FORBIDDEN", "\(remote.text)")
            #expect(!remote.text.contains("token\":"))
            for header in [
                ("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"), ("X-Real-IP", "203.0.113.9"),
                ("Origin", "http://evil.example"), ("Origin", "null"),
            ] {
                let response = try HTTPTestClient.request(
                    port: facade.port,
                    "POST",
                    "/dev/token",
                    headers: [header],
                    body: body
                )
                #expect(response.status == 403 && response.errorCode == "FORBIDDEN", "\(header): \(response.text)")
            }
            // A page of the facade's own origin may ask (what the seat map page does).
            let own = try HTTPTestClient.request(
                port: facade.port,
                "POST",
                "/dev/token",
                headers: [("Origin", "http://127.0.0.1")],
                body: body
            )
            #expect(own.status == 200, "\(own.text)")
            // A DNS-rebinding page reaches 127.0.0.1 under its own name: refused by its Host.
            let connection = try TestConnection(port: facade.port)
            defer { connection.close() }
            try connection.send(
                "POST /dev/token HTTP/1.1\r\nHost: rebind.evil.example:\(facade.port)\r\nConnection: close\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
            )
            let rebound = try connection.readResponse()
            #expect(rebound.status == 403 && rebound.errorCode == "FORBIDDEN", "\(rebound.text)")
        }
    }

    @Test("loopback means 127.0.0.0/8 and ::1, mapped or not, and loopback host names")
    func loopbackRules() {
        for address in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            #expect(DevTokenIssuer.isLoopbackAddress(address), "\(address)")
        }
        for address in ["10.0.0.1", "192.0.2.2", "::ffff:10.0.0.1", "::", "0.0.0.0", "fe80::1", "x"] {
            #expect(!DevTokenIssuer.isLoopbackAddress(address), "\(address)")
        }
        for host in ["localhost", "localhost:3005", "127.0.0.1:3005", "[::1]:3005", "[::1]", "LOCALHOST"] {
            #expect(DevTokenIssuer.isLoopbackHost(host), "\(host)")
        }
        for host in ["evil.example", "localhost.evil.example", "192.0.2.2:3005", "[fe80::1]:1", "127.0.0.1.nip.io"] {
            #expect(!DevTokenIssuer.isLoopbackHost(host), "\(host)")
        }
    }

    // MARK: Helpers

    static func claims(_ token: String) throws -> [String: Any] {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { throw TestFailure("not a JWS: \(token)") }
        var payload = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while payload.count % 4 != 0 { payload += "=" }
        guard let data = Data(base64Encoded: payload),
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw TestFailure("bad payload: \(token)") }
        return object
    }

    /// This host's first IPv4 address that is not loopback (eth0's, say), if any.
    static func nonLoopbackAddress() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else {
                continue
            }
            var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            let text: String? = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                var raw = v4.pointee.sin_addr
                guard inet_ntop(AF_INET, &raw, &buffer, socklen_t(INET_ADDRSTRLEN)) != nil else { return nil }
                let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
                return String(decoding: bytes, as: UTF8.self)
            }
            if let text, !text.hasPrefix("127.") { return text }
        }
        return nil
    }

    /// One request to `address`:`port` (Connection: close).
    static func request(
        to address: String,
        port: Int,
        _ method: String,
        _ path: String,
        body: String
    ) throws -> TestResponse {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        defer { close(fd) }
        var limit = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(UInt16(port).bigEndian)
        target.sin_addr.s_addr = inet_addr(address)
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            throw TestFailure("connect to \(address):\(port): \(String(cString: strerror(errno)))")
        }
        try HTTPTestClient.send(fd, HTTPTestClient.requestBytes(method, path, headers: [], body: Array(body.utf8)))
        return try HTTPTestClient.readResponse(fd)
    }
}
