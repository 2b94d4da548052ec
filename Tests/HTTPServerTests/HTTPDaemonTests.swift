import Dispatch
import Foundation
import HTTPServer
import Synchronization
import TestSupport
import Testing

@Suite("HTTPDaemon over real HTTP")
struct HTTPDaemonTests {
    @Test("a GET with a query and headers reaches the handler decoded")
    func getWithQueryAndHeaders() async throws {
        let seen = Captured<HTTPRequest>()
        let daemon = try startDaemon(handler: { request, responder in
            seen.set(request)
            responder.respond(.text(200, "ok"))
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let response = try await blocking {
            try TestConnection(port: port).request(
                "GET",
                "/search/a%20b?q=hello%20world&tag=a%26b&plus=a+b&empty=&flag&q=second",
                headers: [("X-Custom-Header", "Value"), ("Accept", "text/plain"), ("Accept", "application/json")]
            )
        }
        #expect(response.status == 200)
        #expect(response.text == "ok")
        let request = try #require(seen.current)
        #expect(request.method == "GET")
        #expect(request.path == "/search/a b")
        #expect(request.query["q"] == "hello world")
        #expect(request.query["tag"] == "a&b")
        #expect(request.query["plus"] == "a b")
        #expect(request.query["empty"] == "")
        #expect(request.query["flag"] == "")
        #expect(request.headers["x-custom-header"] == "Value")
        #expect(request.headers["accept"] == "text/plain, application/json")
        #expect(request.headers["host"] == "127.0.0.1")
        #expect(request.body.isEmpty)
        #expect(!request.bodyTooLarge)
    }

    @Test("a POST body arrives whole")
    func postBody() async throws {
        let daemon = try startDaemon(handler: { request, responder in
            responder.respond(HTTPResponse(status: 200, body: request.body))
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let body = Array(#"{"showtimeId":"s1","seatIds":["A1","A2"]}"#.utf8)
        let response = try await blocking {
            try TestConnection(port: port).request(
                "POST",
                "/hold",
                headers: [("Content-Type", "application/json")],
                body: body
            )
        }
        #expect(response.status == 200)
        #expect(response.body == body)
    }

    @Test("a 60 KB body sent in many small writes arrives whole", arguments: [false, true])
    func largeBodyInChunks(chunkedEncoding: Bool) async throws {
        let calls = Captured<(count: Int, tooLarge: Bool)>()
        let daemon = try startDaemon(handler: { request, responder in
            calls.set((request.body.count, request.bodyTooLarge))
            responder.respond(HTTPResponse(status: 200, body: request.body))
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let body = (0..<60_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 256) }
        let response = try await blocking {
            let connection = try TestConnection(port: port)
            if chunkedEncoding {
                try connection.sendHead(
                    method: "POST",
                    target: "/upload",
                    headers: [("Transfer-Encoding", "chunked")]
                )
            } else {
                try connection.sendHead(method: "POST", target: "/upload", bodyLength: body.count)
            }
            for start in stride(from: 0, to: body.count, by: 1_000) {
                let piece = Array(body[start..<min(start + 1_000, body.count)])
                if chunkedEncoding {
                    try connection.send(String(piece.count, radix: 16) + "\r\n")
                    try connection.send(piece + [13, 10])
                } else {
                    try connection.send(piece)
                }
                // Let each write reach the server on its own, so the body arrives in many calls.
                usleep(500)
            }
            if chunkedEncoding {
                try connection.send("0\r\n\r\n")
            }
            return try connection.readResponse()
        }
        #expect(response.status == 200)
        #expect(response.body == body)
        #expect(calls.current?.count == 60_000)
        #expect(calls.current?.tooLarge == false)
    }

    @Test(
        "a body over the limit reaches the handler as bodyTooLarge and its 413 reaches the client",
        arguments: ["content-length", "chunked", "expect-continue", "expect-continue-answered-later"]
    )
    func bodyOverLimit(framing: String) async throws {
        let seen = Captured<HTTPRequest>()
        let daemon = try startDaemon(
            maxBodyBytes: 1_000,
            handler: { request, responder in
                seen.set(request)
                let answer = HTTPResponse.text(
                    request.bodyTooLarge ? 413 : 200,
                    request.bodyTooLarge ? "too large" : "fine"
                )
                if framing == "expect-continue-answered-later" {
                    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) {
                        responder.respond(answer)
                    }
                } else {
                    responder.respond(answer)
                }
            }
        )
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let body = [UInt8](repeating: 0x61, count: 5_000)
        let response = try await blocking { () -> TestResponse in
            let connection = try TestConnection(port: port)
            switch framing {
            case "content-length":
                return try connection.request("POST", "/hold", body: body)
            case "chunked":
                try connection.sendHead(
                    method: "POST",
                    target: "/hold",
                    headers: [("Transfer-Encoding", "chunked")]
                )
                for _ in 0..<5 {
                    try connection.send("3e8\r\n")
                    try connection.send(Array(body[..<1_000]) + [13, 10])
                }
                try connection.send("0\r\n\r\n")
                return try connection.readResponse()
            default:
                // The server answers before the body: the client never sends it.
                try connection.sendHead(
                    method: "POST",
                    target: "/hold",
                    headers: [("Expect", "100-continue")],
                    bodyLength: body.count
                )
                return try connection.readResponse()
            }
        }
        #expect(response.status == 413)
        #expect(response.text == "too large")
        #expect(daemon.inFlight == 0)
        let request = try #require(seen.current)
        #expect(request.bodyTooLarge)
        #expect(request.body.isEmpty)
    }

    @Test("a body exactly at the limit is accepted")
    func bodyAtLimit() async throws {
        let daemon = try startDaemon(
            maxBodyBytes: 1_000,
            handler: { request, responder in
                responder.respond(.text(request.bodyTooLarge ? 413 : 200, "\(request.body.count)"))
            }
        )
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let response = try await blocking {
            try TestConnection(port: port).request("PUT", "/x", body: [UInt8](repeating: 1, count: 1_000))
        }
        #expect(response.status == 200)
        #expect(response.text == "1000")
    }

    @Test("status, headers and body of the response reach the client")
    func responseArrives() async throws {
        let daemon = try startDaemon(handler: { _, responder in
            responder.respond(
                HTTPResponse(
                    status: 201,
                    headers: [
                        ("Content-Type", "application/json"), ("Allow", "GET, POST"),
                        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                    ],
                    body: Array(#"{"holdId":"h1"}"#.utf8)
                )
            )
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let response = try await blocking { try TestConnection(port: port).request("POST", "/hold", body: []) }
        #expect(response.status == 201)
        #expect(response.header("content-type") == "application/json")
        #expect(response.header("allow") == "GET, POST")
        #expect(response.headers.filter { $0.0 == "set-cookie" }.map(\.1) == ["a=1", "b=2"])
        #expect(response.header("content-length") == "15")
        #expect(response.text == #"{"holdId":"h1"}"#)
    }

    @Test("an invalid status is sent as 500")
    func invalidStatus() async throws {
        let daemon = try startDaemon(handler: { _, responder in responder.respond(HTTPResponse(status: 42)) })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let response = try await blocking { try TestConnection(port: port).request("GET", "/") }
        #expect(response.status == 500)
    }

    @Test("a handler that answers later from another thread is heard")
    func answerLater() async throws {
        let daemon = try startDaemon(handler: { request, responder in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
                responder.respond(.text(202, "later \(request.path)"))
            }
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let response = try await blocking { try TestConnection(port: port).request("GET", "/slowly") }
        #expect(response.status == 202)
        #expect(response.text == "later /slowly")
        #expect(daemon.inFlight == 0)
    }

    @Test("a second answer to the same request is ignored")
    func secondAnswerIgnored() async throws {
        let daemon = try startDaemon(handler: { _, responder in
            responder.respond(.text(200, "first"))
            responder.respond(.text(500, "second"))
            DispatchQueue.global().async { responder.respond(.text(500, "third")) }
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let responses = try await blocking {
            let connection = try TestConnection(port: port)
            return try (0..<3).map { _ in try connection.request("GET", "/") }
        }
        #expect(responses.map(\.status) == [200, 200, 200])
        #expect(responses.map(\.text) == ["first", "first", "first"])
    }

    @Test("one keep-alive connection carries many requests answered on either side of the suspension")
    func keepAliveMixedAnswers() async throws {
        // Half answered inside the handler, half from another thread at once: the second kind races the
        // handler's return, i.e. the suspend decision, on every request.
        let daemon = try startDaemon(handler: { request, responder in
            let number = Int(request.query["n"] ?? "") ?? -1
            if number.isMultiple(of: 2) {
                responder.respond(.text(200, "\(number)"))
            } else {
                DispatchQueue.global().async { responder.respond(.text(200, "\(number)")) }
            }
        })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        try await withThrowingTaskGroup(of: [String].self) { group in
            for client in 0..<4 {
                group.addTask {
                    try await blocking {
                        let connection = try TestConnection(port: port)
                        return try (0..<250).map { index in
                            let n = client * 1_000 + index
                            let response = try connection.request("GET", "/echo?n=\(n)")
                            return response.status == 200 && response.text == "\(n)" ? "ok" : "bad \(n)"
                        }
                    }
                }
            }
            var results: [String] = []
            for try await batch in group {
                results += batch
            }
            #expect(results.count == 1_000)
            #expect(results.allSatisfy { $0 == "ok" })
        }
        #expect(daemon.inFlight == 0)
    }

    @Test("100 slow requests in flight on a 2-thread pool do not hold up a fast one")
    func slowRequestsDoNotBlockFastOne() async throws {
        let parked = Mutex<[HTTPResponder]>([])
        let daemon = try startDaemon(
            threads: 2,
            handler: { request, responder in
                if request.path == "/slow" {
                    parked.withLock { $0.append(responder) }
                } else {
                    responder.respond(.text(200, "fast"))
                }
            }
        )
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let slowConnections = try await blocking {
            try (0..<100).map { _ in
                let connection = try TestConnection(port: port)
                try connection.sendHead(method: "GET", target: "/slow")
                return UncheckedBox(connection)
            }
        }
        // inFlight counts a request before its handler ran: wait for the handlers too.
        #expect(try await eventually { daemon.inFlight == 100 && parked.withLock { $0.count } == 100 })

        let fast = try await blocking { try TestConnection(port: port).request("GET", "/fast") }
        #expect(fast.status == 200)
        #expect(fast.text == "fast")
        // The fast request completed while every slow one was still pending.
        #expect(daemon.inFlight == 100)
        #expect(parked.withLock { $0.count } == 100)

        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) {
            for responder in parked.withLock({ $0 }) {
                responder.respond(.text(200, "slow"))
            }
        }
        let slow = try await blocking { try slowConnections.map { try $0.value.readResponse() } }
        #expect(slow.count == 100)
        #expect(slow.allSatisfy { $0.status == 200 && $0.text == "slow" })
        #expect(daemon.inFlight == 0)
    }

    @Test("shutdown answers requests still unanswered at its deadline with 503, and later answers are ignored")
    func shutdownAnswersLeftovers() async throws {
        let parked = Mutex<[HTTPResponder]>([])
        var configuration = HTTPServerConfiguration(port: 0, bindAddress: "127.0.0.1")
        configuration.threads = 2
        let daemon = try HTTPDaemon(configuration: configuration, logger: testLogger) { _, responder in
            parked.withLock { $0.append(responder) }
        }
        let port = daemon.port
        let connections = try await blocking {
            try (0..<20).map { _ in
                let connection = try TestConnection(port: port)
                try connection.sendHead(method: "GET", target: "/never")
                return UncheckedBox(connection)
            }
        }
        #expect(try await eventually { daemon.inFlight == 20 })

        try await blocking { daemon.shutdown(timeout: .milliseconds(200)) }
        #expect(daemon.inFlight == 0)

        let responses = try await blocking { try connections.map { try $0.value.readResponse() } }
        #expect(responses.allSatisfy { $0.status == 503 })
        #expect(responses.allSatisfy { $0.header("connection")?.lowercased() == "close" })
        // Too late, and harmless.
        for responder in parked.withLock({ $0 }) {
            responder.respond(.text(200, "late"))
        }
        daemon.shutdown(timeout: .seconds(1))
        #expect(throws: (any Error).self) { try TestConnection(port: port).request("GET", "/") }
    }

    @Test("shutdown waits for requests answered before its deadline")
    func shutdownWaitsForAnswers() async throws {
        let parked = Mutex<[HTTPResponder]>([])
        let daemon = try HTTPDaemon(
            configuration: HTTPServerConfiguration(port: 0, bindAddress: "127.0.0.1"),
            logger: testLogger
        ) { _, responder in
            parked.withLock { $0.append(responder) }
        }
        let port = daemon.port
        let connections = try await blocking {
            try (0..<10).map { _ in
                let connection = try TestConnection(port: port)
                try connection.sendHead(method: "GET", target: "/work")
                return UncheckedBox(connection)
            }
        }
        // Every handler has parked its responder (inFlight counts a request before its handler has run: on a
        // busy machine the last handler could come after the answers below, and its request was never answered).
        #expect(try await eventually(within: .seconds(30)) { daemon.inFlight == 10 && parked.withLock { $0.count } == 10 })
        // From here to the answers, everything runs on one thread started here, nothing on the cooperative
        // pool: with the whole suite on 2 cores a pool thread (a child task, an `eventually`, a dispatch
        // after a delay) once resumed more than 60 s late, after the shutdown's deadline, and the requests
        // were answered 503. Two concurrent shutdown calls, each on a thread of its own; both return once the
        // daemon is stopped; the deadline is far beyond the answers (shutdown returns as soon as they are sent).
        let sawDraining = try await blocking { () -> Bool in
            let stopped = DispatchGroup()
            for _ in 0..<2 {
                stopped.enter()
                Thread {
                    daemon.shutdown(timeout: .seconds(60))
                    stopped.leave()
                }.start()
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while !daemon.isDraining && ContinuousClock.now < deadline { usleep(10_000) }
            let draining = daemon.isDraining
            usleep(100_000)  // the answers come while shutdown() waits for them
            for responder in parked.withLock({ $0 }) {
                responder.respond(.text(200, "done"))
            }
            stopped.wait()
            return draining
        }
        #expect(sawDraining)
        #expect(daemon.inFlight == 0)
        let responses = try await blocking { try connections.map { try $0.value.readResponse() } }
        #expect(responses.count == 10)
        #expect(responses.allSatisfy { $0.status == 200 && $0.text == "done" }, "\(responses.map { "\($0.status) \($0.text)" })")
        #expect(responses.allSatisfy { $0.header("connection")?.lowercased() == "close" })
    }

    @Test("a daemon stops cleanly while clients keep sending requests")
    func shutdownUnderLoad() async throws {
        let handled = Mutex(0)
        let daemon = try HTTPDaemon(
            configuration: HTTPServerConfiguration(port: 0, bindAddress: "127.0.0.1"),
            logger: testLogger
        ) { request, responder in
            handled.withLock { $0 += 1 }
            if request.query["later"] != nil {
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(5)) {
                    responder.respond(.text(200, "later"))
                }
            } else {
                responder.respond(.text(200, "now"))
            }
        }
        let port = daemon.port
        let stop = Captured<Bool>()
        // The clients and the wait run on threads of their own: when other suites keep Swift's cooperative
        // pool busy (2 threads on a 2-core machine), tasks would not even start within the wait.
        let answered = try await blocking {
            let total = Mutex(0)
            let finished = DispatchGroup()
            for client in 0..<8 {
                finished.enter()
                Thread {
                    defer { finished.leave() }
                    var answered = 0
                    while stop.current != true {
                        guard let connection = try? TestConnection(port: port, timeout: .seconds(5)) else { break }
                        for index in 0..<20 {
                            let target = (client + index).isMultiple(of: 2) ? "/?later" : "/"
                            guard let response = try? connection.request("GET", target) else { break }
                            answered += response.status == 200 || response.status == 503 ? 1 : 0
                        }
                    }
                    total.withLock { $0 += answered }
                }.start()
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while handled.withLock({ $0 }) < 200 && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.005)
            }
            #expect(handled.withLock { $0 } >= 200)
            daemon.shutdown(timeout: .milliseconds(50))
            stop.set(true)
            finished.wait()
            return total.withLock { $0 }
        }
        #expect(answered > 0)
        #expect(daemon.inFlight == 0)
    }

    @Test("starting on a port already in use fails with the library's words")
    func portInUse() async throws {
        let daemon = try startDaemon(handler: { _, responder in responder.respond(.text(200, "")) })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let configuration = HTTPServerConfiguration(port: daemon.port, bindAddress: "127.0.0.1")
        do {
            let second = try HTTPDaemon(configuration: configuration, logger: testLogger) { _, r in
                r.respond(.text(200, ""))
            }
            second.shutdown(timeout: .zero)
            Issue.record("a second daemon started on port \(daemon.port)")
        } catch {
            #expect(error.kind == .startFailed)
            #expect(error.errno == EADDRINUSE)
            #expect(error.message.contains("in use"), "\(error)")
            #expect(error.description.contains("\(daemon.port)"), "\(error)")
        }
    }

    @Test("port 0 binds a free port and reports it")
    func ephemeralPort() async throws {
        let daemon = try startDaemon(handler: { _, responder in responder.respond(.text(200, "here")) })
        defer { daemon.shutdown(timeout: .seconds(2)) }
        #expect((1...65_535).contains(daemon.port))
        let port = daemon.port
        let response = try await blocking { try TestConnection(port: port).request("GET", "/") }
        #expect(response.text == "here")
    }

    @Test("a bind address that is not an IP literal is a configuration error")
    func badBindAddress() {
        let configuration = HTTPServerConfiguration(port: 0, bindAddress: "not-an-address")
        #expect {
            _ = try HTTPDaemon(configuration: configuration, logger: testLogger) { _, _ in }
        } throws: { error in
            (error as? HTTPServerError)?.kind == .invalidConfiguration
        }
    }

    @Test("an IPv6 loopback bind address works")
    func ipv6() throws {
        let configuration = HTTPServerConfiguration(port: 0, bindAddress: "::1")
        let daemon = try HTTPDaemon(configuration: configuration, logger: testLogger) { _, r in
            r.respond(.text(200, ""))
        }
        #expect(daemon.port > 0)
        daemon.shutdown(timeout: .seconds(1))
    }

    @Test("a responder made from a closure takes the first answer only")
    func closureResponder() {
        let answers = Mutex<[Int]>([])
        let responder = HTTPResponder { response in answers.withLock { $0.append(response.status) } }
        responder.respond(HTTPResponse(status: 404))
        responder.respond(HTTPResponse(status: 200))
        #expect(answers.withLock { $0 } == [404])
    }
}

/// Moves a test connection between the blocking helpers; each is used by one thread at a time.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
