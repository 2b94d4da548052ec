import Contracts
import Foundation
import Logging
import ServiceSupport
import Synchronization
import TestSupport
import Testing

@testable import HTTPFacade

/// Decision 0024: the core's reply bytes are passed on (`ReplyScan` finds `data` or `error`), and the
/// answer is the one decoding and encoding again (`ReplyTranslator.decoded`, the path before) gives.
@Suite("Passing the core's replies on") struct ReplyPassThroughTests {
    static let date = Date(timeIntervalSince1970: 1_767_268_800)

    /// Replies as the core encodes them (`ContractJSON`, or `AvailabilityJSON` for availability), by route.
    static func coreReplies() throws -> [(Route, [UInt8])] {
        let hold = Hold(
            holdId: "h1",
            showtimeId: "s1",
            userId: "u1",
            seatIds: ["a", "b"],
            status: .active,
            expiresAt: date
        )
        var purchased = hold
        purchased.status = .purchased
        purchased.orderId = "o-1"
        let seats = (0..<2_000).map { index in
            SeatAvailability(
                seatId: "seat-\(index)",
                state: index % 3 == 0 ? .held : .available,
                holdExpiresAt: index % 3 == 0 ? date : nil,
                version: index
            )
        }
        let history = try ContractJSON.decode(
            SeatHistory.self,
            from: Array(#"{"showtimeId":"s1","seatId":"a","entries":[]}"#.utf8)
        )
        var replies: [(Route, [UInt8])] = [
            (.hold, try RPCReply.ok(hold).body()),
            (.release, try RPCReply.ok(hold).body()),
            (.purchase, try RPCReply.ok(purchased).body()),
            (.holdGet, try RPCReply.ok(hold).body()),
            (.holdExtend, try RPCReply.ok(hold).body()),
            (.availability, AvailabilityJSON.okReply(Availability(showtimeId: "s1", availability: seats))),
            (.availability, AvailabilityJSON.okReply(Availability(showtimeId: "s1", availability: []))),
            (.seatsDefine, try RPCReply.ok(SeatsDefined(showtimeId: "s1", seatCount: 3, added: 1)).body()),
            (.seatHistory, try RPCReply.ok(history).body()),
        ]
        for code in ErrorCode.allCases {
            let error = ErrorBody(code: code, message: "m \"quoted\" {brace}", details: ["seatIds": ["a"]])
            replies.append((.hold, try RPCReply<Hold>.error(error).body()))
            replies.append((.availability, try RPCReply<Availability>.error(error).body()))
        }
        replies.append((.hold, try RPCReply<Hold>.error(.validation([])).body()))
        replies.append((.hold, try RPCReply<Hold>.error(.seatLimitReached(limit: 4, held: 3)).body()))
        return replies
    }

    @Test("every reply kind the core sends: the same status, headers and bytes as decoding and encoding again")
    func sameAsDecoding() throws {
        for (route, reply) in try Self.coreReplies() {
            for replayed in [false, true] {
                #expect(ReplyScan.envelope(reply) != nil, "\(String(decoding: reply.prefix(200), as: UTF8.self))")
                let passed = try ReplyTranslator.answer(route: route, replyBody: reply, replayed: replayed).get()
                let decoded = try ReplyTranslator.decoded(route: route, replyBody: reply, replayed: replayed).get()
                #expect(passed == decoded, "\(route) \(String(decoding: reply.prefix(200), as: UTF8.self))")
            }
        }
    }

    @Test("the contract's valid reply examples (any key order, whitespace) give the same status and JSON")
    func examples() throws {
        let routes: [String: Route] = [
            "reply-hold": .hold, "reply-availability": .availability, "reply-seats-defined": .seatsDefine,
            "reply-seat-history": .seatHistory, "reply-ping": .healthz,
        ]
        let valid = Repository.root.appendingPathComponent("contracts/examples/valid")
        var count = 0
        for (folder, route) in routes {
            let directory = valid.appendingPathComponent(folder)
            for file in try FileManager.default.contentsOfDirectory(atPath: directory.path)
            where file.hasSuffix(".json") {
                let reply = Array(try Data(contentsOf: directory.appendingPathComponent(file)))
                let passed = try ReplyTranslator.answer(route: route, replyBody: reply, replayed: false).get()
                let decoded = try ReplyTranslator.decoded(route: route, replyBody: reply, replayed: false).get()
                #expect(passed.status == decoded.status, "\(folder)/\(file)")
                #expect(passed.headers.isEmpty && passed.contentType == decoded.contentType, "\(folder)/\(file)")
                let passedJSON = try JSONDecoder().decode(JSONValue.self, from: Data(passed.body))
                let decodedJSON = try JSONDecoder().decode(JSONValue.self, from: Data(decoded.body))
                #expect(passedJSON == decodedJSON, "\(folder)/\(file)")
                count += 1
            }
        }
        #expect(count >= 12)
    }

    @Test(
        "the owner check: the owner's hold passes; another user's is 403 HOLD_NOT_OWNED; an escaped userId is decoded"
    )
    func owner() throws {
        let hold = Hold(
            holdId: "h1",
            showtimeId: "s1",
            userId: "u1",
            seatIds: ["a"],
            status: .active,
            expiresAt: Self.date
        )
        let reply = try RPCReply.ok(hold).body()
        let encoded = try ContractJSON.encode(hold)
        for route in [Route.holdGet, .holdExtend] {
            let mine = try ReplyTranslator.answer(route: route, replyBody: reply, replayed: false, owner: "u1").get()
            #expect(mine.status == 200 && mine.body == encoded)
            let theirs = try ReplyTranslator.answer(route: route, replyBody: reply, replayed: false, owner: "u2").get()
            #expect(theirs.status == 403)
            #expect(try ContractJSON.decode(RESTErrorBody.self, from: theirs.body).error.code == .holdNotOwned)
            // A prefix of the owner is not the owner.
            let prefix = try ReplyTranslator.answer(route: route, replyBody: reply, replayed: false, owner: "u").get()
            #expect(prefix.status == 403)
        }
        // "u\u0031" is "u1": the scan leaves escapes to the decoder, which sees the owner.
        let escaped = Array(
            #"{"data":{"expiresAt":"2026-01-01T12:00:00Z","holdId":"h1","seatIds":["a"],"showtimeId":"s1","status":"active","userId":"u\u0031"},"ok":true}"#
                .utf8
        )
        let answer = try ReplyTranslator.answer(route: .holdGet, replyBody: escaped, replayed: false, owner: "u1").get()
        #expect(answer.status == 200)
        #expect(try ContractJSON.decode(Hold.self, from: answer.body).userId == "u1")
        // An error reply has no owner to check.
        let missing = try RPCReply<Hold>.error(ErrorBody(code: .holdNotFound, message: "no")).body()
        let notFound = try ReplyTranslator.answer(route: .holdGet, replyBody: missing, replayed: false, owner: "u1")
            .get()
        #expect(notFound.status == 404)
    }

    @Test("the scan finds data and error whatever the key order and whitespace, and strings that look like JSON")
    func scanShapes() throws {
        let cases: [(String, String)] = [
            (#"{"ok":true,"data":{"a":1}}"#, #"{"a":1}"#),
            (#"{"data":{"a":1},"ok":true}"#, #"{"a":1}"#),
            (
                " {\n \"data\" : { \"a\" : [1, 2, {\"b\": null}] } ,\t\"ok\" : true } \n",
                #"{ "a" : [1, 2, {"b": null}] }"#
            ),
            (#"{"ok":true,"data":{"s":"}]\"{[","t":"\\"},"extra":[{}]}"#, #"{"s":"}]\"{[","t":"\\"}"#),
            (#"{"ok":true,"data":{"n":-1.5e+3,"f":false,"u":"\u00e9"}}"#, #"{"n":-1.5e+3,"f":false,"u":"\u00e9"}"#),
        ]
        for (reply, data) in cases {
            let bytes = Array(reply.utf8)
            guard case .ok(let range)? = ReplyScan.envelope(bytes) else {
                Issue.record("not recognised: \(reply)")
                continue
            }
            #expect(String(decoding: bytes[range], as: UTF8.self) == data)
        }
        let error = Array(#"{"ok":false,"error":{"details":{"x":"}"},"message":"m","code":"SEAT_UNAVAILABLE"}}"#.utf8)
        guard case .error(let range, let code)? = ReplyScan.envelope(error) else {
            Issue.record("error not recognised")
            return
        }
        #expect(code == .seatUnavailable)
        #expect(String(decoding: error[range], as: UTF8.self).hasSuffix(#""code":"SEAT_UNAVAILABLE"}"#))
    }

    @Test(
        "what the scan does not recognise goes to the decoder",
        arguments: [
            "", "{}", "[]", "null", #"{"ok":true}"#, #"{"ok":"true","data":{}}"#, #"{"ok":true,"data":[]}"#,
            #"{"ok":true,"data":{"a":1}"#, #"{"ok":true,"data":{"a":[1}}}"#, #"{"ok":true,"data":{"a":"x}}"#,
            #"{"ok":true,"data":{},"ok":true}"#, #"{"ok":true,"data":{}} x"#, #"{"ok":true "data":{}}"#,
            "{\"ok\":true,\"data\":{\"a\":\"tab\there\"}}",
            #"{"ok":false,"error":{"code":"NOPE","message":"m","details":{}}}"#,
            #"{"ok":false,"error":{"code":"INTERNAL","message":"m"}}"#,
            #"{"ok":false,"error":{"code":"INTERNAL","message":"m","details":{},"code":"INTERNAL"}}"#,
            #"{"ok":false,"error":{"code":"INT\u0045RNAL","message":"m","details":{}}}"#, #"{"ok":false,"data":{}}"#,
            "{\"ok\":true,\"data\":" + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "}",
        ]
    )
    func unrecognised(reply: String) {
        #expect(ReplyScan.envelope(Array(reply.utf8)) == nil)
    }

    @Test("an error without details is decoded and answered with details {} (the contract's REST error)")
    func errorWithoutDetails() throws {
        let reply = Array(#"{"ok":false,"error":{"code":"INTERNAL","message":"The reply could not be encoded"}}"#.utf8)
        let answer = try ReplyTranslator.answer(route: .hold, replyBody: reply, replayed: false).get()
        #expect(answer.status == 500)
        #expect(
            String(decoding: answer.body, as: UTF8.self)
                == #"{"error":{"code":"INTERNAL","details":{},"message":"The reply could not be encoded"}}"#
        )
    }

    /// What passing bytes on gives up: a well-formed envelope whose data is off its schema is no longer
    /// caught per reply. The contract tests (`ReplyContractTests`) check what the core sends instead.
    @Test("a well-formed reply whose data is off its schema is passed on as it is (decision 0024)")
    func offSchemaData() throws {
        let reply = Array(#"{"ok":true,"data":{"holdId":1}}"#.utf8)
        let answer = try ReplyTranslator.answer(route: .purchase, replyBody: reply, replayed: false).get()
        #expect(answer.status == 200 && answer.body == Array(#"{"holdId":1}"#.utf8))
        #expect(throws: ReplyProblem.self) {
            try ReplyTranslator.decoded(route: .purchase, replyBody: reply, replayed: false).get()
        }
    }
}

@Suite("The reply workers and the access log") struct ReplyThreadsTests {
    @Test("reply work runs on the workers' threads, every job once; after stop a job runs where it is submitted")
    func workers() throws {
        let workers = ReplyWorkers(threads: 2, batch: 8)
        let ran = Mutex<[String: Int]>([:])
        let threads = Mutex<Set<UInt>>([])
        let done = DispatchSemaphore(value: 0)
        let submitter = UInt(pthread_self())
        for index in 0..<1_000 {
            workers.submit {
                let thread = UInt(pthread_self())
                ran.withLock { $0["\(index)", default: 0] += 1 }
                threads.withLock { _ = $0.insert(thread) }
                done.signal()
            }
        }
        for _ in 0..<1_000 { #expect(done.wait(timeout: .now() + 10) == .success) }
        #expect(ran.withLock { $0.count == 1_000 && $0.values.allSatisfy { $0 == 1 } })
        // The workers' threads, never the one that submitted (the RPC client's, in the facade).
        let used = threads.withLock { $0 }
        #expect(!used.contains(submitter) && (1...2).contains(used.count), "\(used)")
        workers.stop()
        let here = Mutex(false)
        workers.submit { here.withLock { $0 = true } }
        #expect(here.withLock { $0 })
    }

    @Test("a blocked log sink: record returns at once, lines past the capacity are dropped and counted, then reported")
    func blockedSink() throws {
        let sink = GatedSink()
        let log = AccessLog(logger: sink.logger(), capacity: 4)
        defer { log.stop() }
        @Sendable func entry(_ status: Int) -> AccessLog.Entry {
            AccessLog.Entry(
                method: "GET",
                route: "/availability",
                status: status,
                durationMilliseconds: 1.5,
                correlationID: nil
            )
        }
        // Records on threads of their own, so that a `record` that waited for the sink fails the test
        // (bounded) rather than hanging it.
        let first = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            log.record(entry(200))
            first.signal()
        }
        #expect(first.wait(timeout: .now() + 10) == .success, "record waited for the blocked sink")
        // The writer is inside the sink with the first line, and stays there.
        try sink.waitUntilBlocked()
        let recorded = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            for status in 201...210 { log.record(entry(status)) }
            recorded.signal()
        }
        let returned = recorded.wait(timeout: .now() + 10) == .success
        #expect(returned, "record waited for the blocked sink")
        #expect(log.droppedCount == 6)
        sink.open()
        guard returned else { return }
        try sink.waitForLines { lines in
            lines.contains { $0.contains("access_log.dropped=6") }
                && lines.filter { $0.contains("http.status=") }.count >= 5
        }
        let written = sink.lines.filter { $0.contains("http.status=") }.map { line in
            line.components(separatedBy: "http.status=")[1].prefix(3)
        }
        #expect(written == ["200", "201", "202", "203", "204"])
    }
}

/// A log sink whose access lines (`http.status=` in their metadata) wait while the gate is closed.
final class GatedSink: @unchecked Sendable {
    // @unchecked: the state is touched only under `condition`'s lock.
    private let condition = NSCondition()
    private var isOpen = false
    private var waiting = 0
    private var written: [String] = []

    func logger(label: String = "http-facade") -> Logger {
        Logger(label: label) { label in
            LineLogHandler(label: label, level: .info, output: { [self] line in write(line) })
        }
    }

    private func write(_ line: String) {
        condition.lock()
        if line.contains("http.status=") {
            waiting += 1
            condition.broadcast()
            while !isOpen { condition.wait() }
            waiting -= 1
        }
        written.append(line)
        condition.broadcast()
        condition.unlock()
    }

    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }

    var lines: [String] {
        condition.lock()
        defer { condition.unlock() }
        return written
    }

    /// Bounded: a writer must reach the gate within 10 s.
    func waitUntilBlocked() throws {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(10)
        while waiting == 0 {
            guard condition.wait(until: deadline) else { throw TestFailure("nothing reached the gate") }
        }
    }

    func waitForLines(_ done: ([String]) -> Bool) throws {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(10)
        while !done(written) {
            guard condition.wait(until: deadline) else { throw TestFailure("lines: \(written)") }
        }
    }
}
