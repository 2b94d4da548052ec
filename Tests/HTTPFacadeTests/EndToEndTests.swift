import Foundation
import TestSupport
import Testing

/// Over real HTTP, against the real core (`inventory-rpc serve` as a subprocess) and the real PostgreSQL,
/// Redis and RabbitMQ, each stack on its own vhost and database. Serialized: they share two cores.
@Suite("End to end: facade + core + services", .serialized)
struct EndToEndTests {
    static let origin = ("Origin", "http://localhost:3000")

    @Test("every route answers as INTERFACE.md says, with CORS, replay header, metrics and access log")
    func everyRoute() async throws {
        try await withStack { stack in
            // PUT /showtimes/{showtimeId}/seats
            let showtime = uniqueName("show")
            let defined = try stack.request(
                "PUT",
                "/showtimes/\(showtime)/seats",
                headers: [Self.origin],
                body: #"{"seatIds":["a1","a2","a3"]}"#
            )
            #expect(defined.status == 200)
            #expect(defined.json["seatCount"] as? Int == 3 && defined.json["added"] as? Int == 3)
            #expect(defined.header("content-type") == "application/json")
            #expect(defined.header("access-control-allow-origin") == "http://localhost:3000")
            #expect(defined.header("vary") == "Origin")
            #expect(
                defined.header("access-control-expose-headers")
                    == "Idempotent-Replayed, WWW-Authenticate, Retry-After, RateLimit-Policy, RateLimit"
            )

            // POST /hold → 201, with the replay marked on the second identical keyed request
            let first = try hold(stack, showtime, ["a1", "a2"], user: "u1", headers: [("Idempotency-Key", "key-1")])
            #expect(first.status == 201)
            #expect(first.json["status"] as? String == "active")
            #expect(first.header("idempotent-replayed") == nil)
            let holdID = try #require(first.json["holdId"] as? String)
            let replay = try hold(stack, showtime, ["a1", "a2"], user: "u1", headers: [("idempotencyKey", "key-1")])
            #expect(replay.status == 201)
            #expect(replay.header("idempotent-replayed") == "true")
            #expect(replay.json["holdId"] as? String == holdID)
            let bodyKey = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["a1","a2"],"userId":"u1","idempotencyKey":"key-1"}"#
            )
            #expect(bodyKey.status == 201 && bodyKey.header("idempotent-replayed") == "true")

            // GET /holds/{holdId}, GET /availability
            let fetched = try stack.request("GET", "/holds/\(holdID)")
            #expect(fetched.status == 200 && fetched.json["holdId"] as? String == holdID)
            let availability = try stack.request("GET", "/availability?showtimeId=\(showtime)")
            #expect(availability.status == 200)
            let summary = try #require(availability.json["summary"] as? [String: Int])
            #expect(summary == ["available": 1, "held": 2, "purchased": 0])
            let seats = try #require(availability.json["availability"] as? [[String: Any]])
            #expect(seats.map { $0["seatId"] as? String } == ["a1", "a2", "a3"])
            #expect(seats[0]["holdExpiresAt"] is String && seats[2]["holdExpiresAt"] == nil)

            // POST /release (twice: idempotent by nature)
            let released = try stack.request("POST", "/release", body: #"{"holdId":"\#(holdID)","userId":"u1"}"#)
            #expect(released.status == 200 && released.json["status"] as? String == "released")
            #expect(try stack.request("POST", "/release", body: #"{"holdId":"\#(holdID)"}"#).status == 200)

            // POST /purchase (twice with the same orderId)
            let second = try hold(stack, showtime, ["a3"], user: "u2")
            let secondID = try #require(second.json["holdId"] as? String)
            let purchased = try stack.request("POST", "/purchase", body: #"{"holdId":"\#(secondID)","orderId":"o-1"}"#)
            #expect(purchased.status == 200)
            #expect(purchased.json["status"] as? String == "purchased" && purchased.json["orderId"] as? String == "o-1")
            #expect(
                try stack.request("POST", "/purchase", body: #"{"holdId":"\#(secondID)","orderId":"o-1"}"#).status
                    == 200
            )

            // Operations routes
            let health = try stack.request("GET", "/healthz")
            #expect(health.status == 200 && health.json["status"] as? String == "ok")
            let ready = try stack.request("GET", "/readyz")
            #expect(ready.status == 200 && ready.json["status"] as? String == "ok")
            let metrics = try stack.metrics()
            #expect(metrics.status == 200)
            // /metrics left the public port for the operations port (loopback by default).
            #expect(try stack.request("GET", "/metrics").status == 404)
            #expect(metrics.header("content-type")?.hasPrefix("text/plain") == true)
            for name in [
                #"http_requests_total{route="/hold",status="201"}"#,
                #"http_request_duration_seconds_bucket{route="/holds/{holdId}""#,
                "rpc_timeouts_total", "http_requests_in_flight",
            ] {
                #expect(metrics.text.contains(name), "metrics lack \(name)")
            }

            // CORS preflight; other origins get no allow header
            let preflight = try stack.request(
                "OPTIONS",
                "/hold",
                headers: [
                    Self.origin, ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "idempotency-key"),
                ]
            )
            #expect(preflight.status == 204)
            #expect(preflight.header("access-control-allow-origin") == "http://localhost:3000")
            #expect(preflight.header("access-control-allow-methods") == "POST, OPTIONS")
            #expect(preflight.header("access-control-allow-headers")?.contains("Idempotency-Key") == true)
            #expect(preflight.header("access-control-max-age") != nil)
            let secondOrigin = try stack.request(
                "GET",
                "/healthz",
                headers: [("Origin", "https://tickets.example.com")]
            )
            #expect(secondOrigin.header("access-control-allow-origin") == "https://tickets.example.com")
            let evil = try stack.request("OPTIONS", "/hold", headers: [("Origin", "http://evil.example")])
            #expect(evil.status == 204 && evil.header("access-control-allow-origin") == nil)
            let evilGet = try stack.request("GET", "/holds/\(holdID)", headers: [("Origin", "http://evil.example")])
            #expect(evilGet.status == 200 && evilGet.header("access-control-allow-origin") == nil)

            // Access log: method, route template, status, duration and the RPC's correlation id
            let line = try #require(
                stack.logs.first { $0.contains("http.route=/holds/{holdId}") && $0.contains("http.status=200") }
            )
            #expect(line.contains("http.method=GET") && line.contains("duration_ms="))
            let correlation = try #require(line.split(separator: " ").first { $0.hasPrefix("correlation_id=") })
            #expect(correlation != "correlation_id=-")
        }
    }

    @Test("every error code of the table, with its status and the contract's body")
    func everyErrorCode() async throws {
        try await withStack { stack in
            let showtime = try stack.showtime(seats: 12)
            func expectError(_ response: TestResponse, _ status: Int, _ code: String, _ comment: String) {
                #expect(response.status == status, "\(comment): \(response.text)")
                #expect(response.errorCode == code, "\(comment): \(response.text)")
                #expect(response.header("content-type") == "application/json", "\(comment)")
                let error = response.json["error"] as? [String: Any]
                #expect(error?["message"] is String && error?["details"] is [String: Any], "\(comment)")
            }
            func field(_ response: TestResponse) -> String? {
                ((response.json["error"] as? [String: Any])?["details"] as? [String: Any])?["field"] as? String
            }

            // VALIDATION_FAILED, 400, before anything reaches the core
            let validation: [(String, String, String?, String)] = [
                ("POST", "/hold", "{not json", "$"),
                ("POST", "/hold", #"{"showtimeId":1,"seatIds":["s1"],"userId":"u"}"#, "showtimeId"),
                ("POST", "/hold", #"{"showtimeId":"\#(showtime)","seatIds":[],"userId":"u"}"#, "seatIds"),
                ("POST", "/hold", #"{"showtimeId":"\#(showtime)","seatIds":["s1","s1"],"userId":"u"}"#, "seatIds"),
                (
                    "POST", "/hold",
                    #"{"showtimeId":"\#(showtime)","seatIds":["s1","s2","s3","s4","s5","s6","s7","s8","s9","s10","s11"],"userId":"u"}"#,
                    "seatIds"
                ),
                ("POST", "/hold", #"{"showtimeId":"bad id","seatIds":["s1"],"userId":"u"}"#, "showtimeId"),
                ("POST", "/release", #"{"holdId":["x"]}"#, "holdId"),
                ("POST", "/purchase", #"{"holdId":"h"}"#, "orderId"),
                ("GET", "/holds/bad%20id", nil, "holdId"),
                ("GET", "/availability", nil, "showtimeId"),
                ("GET", "/availability?showtimeId=%24%24", nil, "showtimeId"),
                ("PUT", "/showtimes/bad%20id/seats", #"{"seatIds":["a"]}"#, "showtimeId"),
            ]
            for (method, path, body, expectedField) in validation {
                let response = try stack.request(method, path, body: body)
                expectError(response, 400, "VALIDATION_FAILED", "\(method) \(path) \(body ?? "")")
                #expect(field(response) == expectedField, "\(method) \(path): \(response.text)")
            }
            let mismatch = try hold(
                stack,
                showtime,
                ["s1"],
                user: "u",
                headers: [("Idempotency-Key", "a"), ("idempotencyKey", "b")]
            )
            expectError(mismatch, 400, "VALIDATION_FAILED", "header keys differ")
            let bodyMismatch = try stack.request(
                "POST",
                "/hold",
                headers: [("Idempotency-Key", "a")],
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s1"],"userId":"u","idempotencyKey":"b"}"#
            )
            expectError(bodyMismatch, 400, "VALIDATION_FAILED", "body and header keys differ")
            #expect(field(bodyMismatch) == "idempotencyKey")

            // NOT_FOUND, METHOD_NOT_ALLOWED (with Allow), PAYLOAD_TOO_LARGE
            expectError(try stack.request("GET", "/nowhere"), 404, "NOT_FOUND", "unknown route")
            let wrongMethod = try stack.request("GET", "/hold")
            expectError(wrongMethod, 405, "METHOD_NOT_ALLOWED", "GET /hold")
            #expect(wrongMethod.header("allow") == "POST, OPTIONS")
            #expect(try stack.request("DELETE", "/holds/x").header("allow") == "GET, OPTIONS")
            let huge = #"{"seatIds":["# + String(repeating: "\"x\",", count: 20_000) + #""y"]}"#
            expectError(
                try stack.request("PUT", "/showtimes/\(showtime)/seats", body: huge),
                413,
                "PAYLOAD_TOO_LARGE",
                "70 KB body"
            )

            // From the core
            expectError(
                try stack.request("GET", "/availability?showtimeId=nope-\(showtime)"),
                404,
                "SHOWTIME_NOT_FOUND",
                "unknown showtime"
            )
            expectError(
                try hold(stack, "nope-\(showtime)", ["s1"], user: "u"),
                404,
                "SHOWTIME_NOT_FOUND",
                "hold on unknown showtime"
            )
            expectError(try stack.request("GET", "/holds/hold_unknown"), 404, "HOLD_NOT_FOUND", "unknown hold")
            let unknownSeats = try hold(stack, showtime, ["s1", "zz9"], user: "u")
            expectError(unknownSeats, 422, "UNKNOWN_SEATS", "seat not in the map")
            #expect(
                ((unknownSeats.json["error"] as? [String: Any])?["details"] as? [String: Any])?["seatIds"] as? [String]
                    == ["zz9"]
            )

            let owned = try hold(
                stack,
                showtime,
                ["s1", "s2"],
                user: "alice",
                headers: [("Idempotency-Key", "k-alice")]
            )
            #expect(owned.status == 201)
            let holdID = try #require(owned.json["holdId"] as? String)
            let taken = try hold(stack, showtime, ["s2", "s3"], user: "bob")
            expectError(taken, 409, "SEAT_UNAVAILABLE", "seat held by another")
            #expect(
                ((taken.json["error"] as? [String: Any])?["details"] as? [String: Any])?["seatIds"] as? [String] == [
                    "s2"
                ]
            )
            expectError(
                try hold(stack, showtime, ["s5"], user: "alice", headers: [("Idempotency-Key", "k-alice")]),
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "same key, other request"
            )
            expectError(
                try stack.request("POST", "/release", body: #"{"holdId":"\#(holdID)","userId":"bob"}"#),
                403,
                "HOLD_NOT_OWNED",
                "release by another user"
            )
            #expect(
                try stack.request("POST", "/purchase", body: #"{"holdId":"\#(holdID)","orderId":"o1"}"#).status == 200
            )
            expectError(
                try stack.request("POST", "/purchase", body: #"{"holdId":"\#(holdID)","orderId":"o2"}"#),
                409,
                "HOLD_NOT_ACTIVE",
                "purchase again with another order"
            )
            expectError(
                try stack.request("POST", "/release", body: #"{"holdId":"\#(holdID)"}"#),
                409,
                "HOLD_NOT_ACTIVE",
                "release of a purchased hold"
            )
            let other = try hold(stack, showtime, ["s7"], user: "carol")
            let otherID = try #require(other.json["holdId"] as? String)
            #expect(try stack.request("POST", "/release", body: #"{"holdId":"\#(otherID)"}"#).status == 200)
            expectError(
                try stack.request("POST", "/purchase", body: #"{"holdId":"\#(otherID)","orderId":"o3"}"#),
                409,
                "HOLD_NOT_ACTIVE",
                "purchase of a released hold"
            )
            // IDEMPOTENCY_KEY_IN_USE needs the first request still in the core: many identical keyed requests
            // at once give one hold; the others replay it or are told the key is in use, nothing else.
            let racing = try parallel(20) { _ in
                try hold(stack, showtime, ["s10", "s11"], user: "dave", headers: [("Idempotency-Key", "k-race")])
            }
            let ids = Set(racing.compactMap { $0.json["holdId"] as? String })
            #expect(ids.count == 1, "\(racing.map(\.text))")
            #expect(
                racing.allSatisfy { $0.status == 201 || $0.errorCode == "IDEMPOTENCY_KEY_IN_USE" },
                "\(racing.map(\.text))"
            )
            let inUse = racing.filter { $0.errorCode == "IDEMPOTENCY_KEY_IN_USE" }
            for response in inUse { expectError(response, 409, "IDEMPOTENCY_KEY_IN_USE", "key in use") }
        }
    }

    @Test("HOLD_EXPIRED: a purchase after expiresAt is refused")
    func holdExpired() async throws {
        try await withStack(holdTTLSeconds: 1) { stack in
            let showtime = try stack.showtime(seats: 2)
            let held = try hold(stack, showtime, ["s1"], user: "u")
            #expect(held.status == 201)
            let holdID = try #require(held.json["holdId"] as? String)
            // The hold lives one second; nothing to await but the clock (bounded).
            usleep(2_100_000)
            let late = try stack.request("POST", "/purchase", body: #"{"holdId":"\#(holdID)","orderId":"o"}"#)
            #expect(late.status == 409 && late.errorCode == "HOLD_EXPIRED", "\(late.text)")
        }
    }

    @Test("the seed's scenario, then 200 concurrent holds on one seat: exactly one 201")
    func contention() async throws {
        try await withStack { stack in
            let showtime = try stack.showtime(seats: 5)
            let pair = try parallel(2) { index in try hold(stack, showtime, ["s1"], user: "client-\(index)") }
            #expect(pair.map(\.status).sorted() == [201, 409], "\(pair.map(\.text))")
            #expect(pair.contains { $0.errorCode == "SEAT_UNAVAILABLE" })

            let storm = try parallel(200) { index in try hold(stack, showtime, ["s2"], user: "user-\(index)") }
            var statuses: [Int: Int] = [:]
            for response in storm { statuses[response.status, default: 0] += 1 }
            #expect(statuses[201] == 1, "\(statuses)")
            #expect(statuses[409] == 199, "\(statuses)")
            #expect(storm.filter { $0.status == 409 }.allSatisfy { $0.errorCode == "SEAT_UNAVAILABLE" })
            let availability = try stack.request("GET", "/availability?showtimeId=\(showtime)")
            #expect((availability.json["summary"] as? [String: Int])?["held"] == 2)
        }
    }

    @Test(
        "core stopped: /readyz 503, POST /hold 504 after RPC_TIMEOUT_MS, 1,000 waiting requests starve nobody; recovers"
    )
    func coreStopped() async throws {
        // A long RPC timeout: the 1,000 requests below must all still be waiting when the facade is checked
        // (with 1.5 s, sending them on a loaded machine took longer than that, and the first had already
        // been answered 504), and "at once" is then far from "after the timeout".
        try await withStack(rpcTimeoutMilliseconds: 20_000) { stack in
            let showtime = try stack.showtime(seats: 3)
            stack.stopCore()

            // Readiness is cached for a second at most: poll, bounded.
            var ready = try stack.request("GET", "/readyz")
            let readyDeadline = Date().addingTimeInterval(5)
            while ready.status != 503 && Date() < readyDeadline {
                usleep(100_000)
                ready = try stack.request("GET", "/readyz")
            }
            #expect(ready.status == 503 && ready.errorCode == "SERVICE_UNAVAILABLE", "\(ready.text)")

            let started = ContinuousClock.now
            let timedOut = try hold(stack, showtime, ["s1"], user: "u")
            let elapsed = started.duration(to: .now)
            #expect(timedOut.status == 504 && timedOut.errorCode == "UPSTREAM_TIMEOUT", "\(timedOut.text)")
            #expect(elapsed >= .milliseconds(19_900) && elapsed < .seconds(30), "\(elapsed)")

            // 1,000 requests waiting for the silent core hold no daemon thread: others are answered at once.
            let body = Array(#"{"showtimeId":"\#(showtime)","seatIds":["s2"],"userId":"u"}"#.utf8)
            var sockets: [Int32] = []
            defer { for socket in sockets { close(socket) } }
            for _ in 0..<1000 {
                let socket = try HTTPTestClient.open(port: stack.port, timeout: .seconds(60))
                sockets.append(socket)
                try HTTPTestClient.send(
                    socket,
                    HTTPTestClient.requestBytes("POST", "/hold", headers: [Stack.bearer], body: body)
                )
            }
            // Wait (bounded) until the facade holds them all.
            let inFlightDeadline = Date().addingTimeInterval(15)
            var inFlight = 0.0
            repeat {
                let metrics = try stack.metrics().text
                let line = metrics.split(separator: "\n").first { $0.hasPrefix("http_requests_in_flight ") }
                inFlight = Double(line?.split(separator: " ").last ?? "0") ?? 0
            } while inFlight < 1000 && Date() < inFlightDeadline
            #expect(inFlight >= 1000, "in flight: \(inFlight)")
            let quick = ContinuousClock.now
            let health = try stack.request("GET", "/healthz")
            let validation = try stack.request("POST", "/hold", body: "{}")
            #expect(health.status == 200 && validation.status == 400)
            // Starved, they would wait for the 20 s timeout of the requests ahead of them.
            #expect(quick.duration(to: .now) < .seconds(10), "\(quick.duration(to: .now))")
            var answered: [Int: Int] = [:]
            for socket in sockets {
                answered[(try? HTTPTestClient.readResponse(socket))?.status ?? -1, default: 0] += 1
            }
            #expect(answered == [504: 1000], "\(answered)")

            // The core comes back: ready again and holds work, by themselves.
            try stack.startCore()
            try stack.waitUntilReady()
            #expect(try hold(stack, showtime, ["s3"], user: "u").status == 201)
        }
    }

    @Test("broker unreachable: 503 at once, also for calls pending on the lost connection; recovers by itself")
    func brokerDown() async throws {
        // The RPC timeout is far longer than any answer on a lost connection may take: a call that waited
        // for it would be answered 504 UPSTREAM_TIMEOUT, so a 503 proves the loss itself answered it (no
        // wall-clock bound, which a loaded machine breaks).
        try await withStack(rpcTimeoutMilliseconds: 30_000) { stack in
            let showtime = try stack.showtime(seats: 3)
            // A call pending on the connection (the core is stopped, so nobody answers it)...
            stack.stopCore()
            let pending = Thread.detachedResult { try hold(stack, showtime, ["s1"], user: "u") }
            usleep(300_000)
            // ...then the broker goes away for this stack: deleting the vhost closes its connections.
            try stack.deleteVhost()
            let pendingAnswer = try pending.value()
            #expect(
                pendingAnswer.status == 503 && pendingAnswer.errorCode == "SERVICE_UNAVAILABLE",
                "\(pendingAnswer.text)"
            )

            let refused = try hold(stack, showtime, ["s1"], user: "u")
            #expect(refused.status == 503 && refused.errorCode == "SERVICE_UNAVAILABLE", "\(refused.text)")
            #expect(try stack.request("GET", "/readyz").status == 503)
            #expect(try stack.request("GET", "/healthz").status == 200)

            // The broker returns: the facade reconnects with back-off, the core redeclares its queues.
            try stack.createVhost()
            try stack.startCore()
            try stack.waitUntilReady()
            let held = try hold(stack, showtime, ["s2"], user: "u")
            #expect(held.status == 201, "\(held.text)")
            #expect(stack.logs.all.contains { $0.contains("RPC client reconnected") })
        }
    }

    @Test(
        "http-facade on SIGTERM: prints its port line, answers what is in flight, refuses new work, exits 0 within 10 s"
    )
    func sigterm() async throws {
        try await withStack(rpcTimeoutMilliseconds: 2000) { stack in
            let showtime = try stack.showtime(seats: 3)
            // A silent core keeps requests in flight until the RPC timeout.
            stack.stopCore()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try Products.path("http-facade"))
            process.environment = ProcessInfo.processInfo.environment.merging(stack.environment) { _, new in new }
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            let prefix = "Inventory service running on port "
            #expect(line.hasPrefix(prefix), "\(line)")
            let port = try #require(Int(line.dropFirst(prefix.count).prefix { $0.isNumber }))
            let ready = Date().addingTimeInterval(10)
            while (try? HTTPTestClient.request(port: port, "GET", "/healthz"))?.status != 200 && Date() < ready {
                usleep(50_000)
            }
            // Wait (bounded) for the RPC client's connection: before it, holds are 503 at once.
            let connected = Date().addingTimeInterval(10)
            while Date() < connected {
                let readiness = try HTTPTestClient.request(port: port, "GET", "/readyz")
                if readiness.text.contains("did not answer") || readiness.text.contains("no core") { break }
                usleep(100_000)
            }

            let body = Array(#"{"showtimeId":"\#(showtime)","seatIds":["s1"],"userId":"u"}"#.utf8)
            var sockets: [Int32] = []
            defer { for socket in sockets { close(socket) } }
            for _ in 0..<5 {
                let socket = try HTTPTestClient.open(port: port, timeout: .seconds(15))
                try HTTPTestClient.send(
                    socket,
                    HTTPTestClient.requestBytes("POST", "/hold", headers: [Stack.bearer], body: body)
                )
                sockets.append(socket)
            }
            usleep(300_000)
            let signalled = ContinuousClock.now
            kill(process.processIdentifier, SIGTERM)
            usleep(100_000)
            // New work is refused: the listening socket is closed (or, on an open connection, 503).
            let late = try? HTTPTestClient.request(port: port, "GET", "/healthz")
            #expect(late == nil || late?.status == 503, "\(late?.text ?? "")")
            for socket in sockets {
                let response = try HTTPTestClient.readResponse(socket)
                #expect(response.status == 504 && response.errorCode == "UPSTREAM_TIMEOUT", "\(response.text)")
            }
            let exited = Date().addingTimeInterval(10)
            while process.isRunning && Date() < exited { usleep(20_000) }
            #expect(!process.isRunning, "still running 10 s after SIGTERM")
            #expect(signalled.duration(to: .now) < .seconds(10))
            process.waitUntilExit()
            #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        }
    }

    @Test(
        "schemathesis fuzzes the OpenAPI document against the live facade, with a token and without: no 5xx, no schema break, >= 1,000 requests"
    )
    func contractFuzzing() async throws {
        let root = Repository.root
        let result = try await withStack { stack in
            try runProcess(
                "/bin/bash",
                [root.appendingPathComponent("scripts/fuzz-facade.sh").path, "http://127.0.0.1:\(stack.port)", "1000"],
                // Authentication on: an admin token that may also purchase, then a pass with none.
                environment: ["FUZZ_TOKEN": Stack.operatorToken]
            )
        }
        let summary = result.output.split(separator: "\n").filter {
            $0.contains("fuzz-facade:") || $0.contains("generated")
        }
        #expect(result.status == 0, "\(result.output.suffix(6000))")
        print(summary.joined(separator: "\n"))
    }
}

/// `POST /hold` for `seats` of `showtime` by `user`.
func hold(
    _ stack: Stack,
    _ showtime: String,
    _ seats: [String],
    user: String,
    headers: [(String, String)] = []
)
    throws -> TestResponse
{
    let seatList = seats.map { "\"\($0)\"" }.joined(separator: ",")
    return try stack.request(
        "POST",
        "/hold",
        headers: headers,
        body: #"{"showtimeId":"\#(showtime)","seatIds":[\#(seatList)],"userId":"\#(user)"}"#
    )
}

extension Thread {
    /// Runs `body` on a new thread; `value()` waits for its result.
    static func detachedResult<T: Sendable>(_ body: @escaping @Sendable () throws -> T) -> PendingResult<T> {
        let pending = PendingResult<T>()
        let thread = Thread { pending.set(Result { try body() }) }
        thread.start()
        return pending
    }
}

final class PendingResult<T: Sendable>: @unchecked Sendable {
    // @unchecked: `result` is only touched under `condition`.
    private let condition = NSCondition()
    private var result: Result<T, any Error>?

    func set(_ value: Result<T, any Error>) {
        condition.lock()
        result = value
        condition.broadcast()
        condition.unlock()
    }

    func value() throws -> T {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return try result!.get()
    }
}
