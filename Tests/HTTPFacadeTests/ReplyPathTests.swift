import AMQPClient
import Contracts
import Foundation
import TestSupport
import Testing

@testable import HTTPFacade

/// Decision 0024 against the real core: the facade passes the core's bytes on, so the contract is checked
/// here, on what the core really sends, rather than on every reply; and the access log cannot hold up
/// an answer.
@Suite("The facade's reply path, end to end", .serialized)
struct ReplyPathTests {
    /// Where each route's data goes in contracts/schemas: the RPC reply, and the REST body.
    static func schemas(_ route: Route) -> (reply: String, rest: String) {
        switch route {
        case .hold, .release, .purchase, .holdGet, .holdExtend: ("reply-hold", "hold")
        case .availability: ("reply-availability", "availability")
        case .seatsDefine: ("reply-seats-defined", "seats-defined")
        case .seatHistory: ("reply-seat-history", "seat-history")
        case .healthz, .readyz: ("reply-ping", "ping-reply")
        }
    }

    @Test(
        "every reply kind the core sends fits contracts/, and so does the REST body made of it, byte-equal to decoding"
    )
    func coreRepliesFitTheContract() async throws {
        let stack = Stack()
        do {
            try await blocking { try stack.start() }
            try await checkReplies(stack)
        } catch {
            _ = try? await blocking { stack.close() }
            throw error
        }
        try await blocking { stack.close() }
    }

    private func checkReplies(_ stack: Stack) async throws {
        do {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reply-path-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dir) }
            var count = 0
            func write(_ schema: String, _ bytes: [UInt8]) throws {
                let folder = dir.appendingPathComponent(schema)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                count += 1
                try Data(bytes).write(to: folder.appendingPathComponent("\(count).json"))
            }
            var codes: Set<String> = []
            let client = try RPCTestClient(url: stack.rabbitMQURL)
            defer { client.close() }
            func call<T: Encodable & Sendable>(
                _ route: Route,
                _ operation: RPCOperation,
                _ request: T
            ) async throws -> [UInt8] {
                let answer = try await client.call(operation, request)
                let body = answer.body
                let (replySchema, restSchema) = Self.schemas(route)
                try write(replySchema, body)
                #expect(ReplyScan.envelope(body) != nil, "\(String(decoding: body, as: UTF8.self))")
                let passed = try ReplyTranslator.answer(route: route, replyBody: body, replayed: answer.isReplayed)
                    .get()
                let decoded = try ReplyTranslator.decoded(route: route, replyBody: body, replayed: answer.isReplayed)
                    .get()
                #expect(passed == decoded, "\(String(decoding: body, as: UTF8.self))")
                if passed.status >= 400 {
                    try write("error-body", passed.body)
                    codes.insert(try ContractJSON.decode(RESTErrorBody.self, from: passed.body).error.code.rawValue)
                } else {
                    try write(restSchema, passed.body)
                }
                return passed.body
            }

            let showtime = uniqueName("show")
            let seats = (1...5).map { (index: Int) in
                SeatDefinition(
                    seatId: "s\(index)",
                    section: "Stalls",
                    row: "A",
                    number: index,
                    category: "standard",
                    rank: index
                )
            }
            _ = try await call(.seatsDefine, .seatsDefine, SeatsDefineRequest(showtimeId: showtime, seats: seats))
            _ = try await call(.availability, .availability, AvailabilityRequest(showtimeId: showtime))
            let held = try await call(
                .hold,
                .hold,
                HoldRequest(showtimeId: showtime, seatIds: ["s1", "s2"], userId: "u1", idempotencyKey: "key-1")
            )
            let hold = try ContractJSON.decode(Hold.self, from: held)
            _ = try await call(
                .hold,
                .hold,
                HoldRequest(showtimeId: showtime, seatIds: ["s1", "s2"], userId: "u1", idempotencyKey: "key-1")
            )
            _ = try await call(.hold, .hold, HoldRequest(showtimeId: showtime, seatIds: ["s2"], userId: "u2"))
            _ = try await call(.hold, .hold, HoldRequest(showtimeId: showtime, seatIds: ["nope"], userId: "u2"))
            _ = try await call(.hold, .hold, HoldRequest(showtimeId: showtime, seatIds: [], userId: "u2"))
            _ = try await call(.availability, .availability, AvailabilityRequest(showtimeId: showtime))
            _ = try await call(.holdGet, .holdGet, HoldGetRequest(holdId: hold.holdId))
            _ = try await call(.holdGet, .holdGet, HoldGetRequest(holdId: "no-such-hold"))
            _ = try await call(.holdExtend, .holdExtend, HoldExtendRequest(holdId: hold.holdId, userId: "u1"))
            _ = try await call(.purchase, .purchase, PurchaseRequest(holdId: hold.holdId, orderId: "o-1", userId: "u1"))
            _ = try await call(.release, .release, ReleaseRequest(holdId: hold.holdId, userId: "u1"))
            _ = try await call(.seatHistory, .seatHistory, SeatHistoryRequest(showtimeId: showtime, seatId: "s1"))
            _ = try await call(.availability, .availability, AvailabilityRequest(showtimeId: uniqueName("none")))
            _ = try await call(.healthz, .ping, PingRequest())
            #expect(codes.isSuperset(of: ["SEAT_UNAVAILABLE", "UNKNOWN_SEATS", "VALIDATION_FAILED", "HOLD_NOT_FOUND"]))

            // And what the facade serves over HTTP.
            for (path, schema) in [
                ("/availability?showtimeId=\(showtime)", "availability"), ("/holds/\(hold.holdId)", "hold"),
                ("/holds/no-such-hold", "error-body"), ("/availability?showtimeId=", "error-body"),
            ] {
                let response = try await blocking { try stack.request("GET", path) }
                try write(schema, Array(response.body))
            }

            let validate = dir.path
            let result = try await blocking {
                try Self.run(["bash", "scripts/check-contracts.sh", "--validate", validate])
            }
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("\(count) documents checked, 0 problems"), "\(result.output)")
        }
    }

    @Test("a blocked access log sink stops no answer: every request is answered right, the lines follow when it frees")
    func blockedAccessLog() async throws {
        try await blocking {
            let stack = Stack()
            let sink = GatedSink()
            stack.facadeLogger = sink.logger()
            defer {
                sink.open()
                stack.close()
            }
            // The gate is closed from the start: the writer stops at the first access line (readiness's).
            try stack.start()
            let showtime = try stack.showtime(seats: 20)
            _ = try stack.request("GET", "/nowhere")
            try sink.waitUntilBlocked()

            // The writer is stuck in the sink. Every kind of answer still comes, with its status.
            var expected = 0
            for index in 1...20 {
                let body = #"{"showtimeId":"\#(showtime)","seatIds":["s\#(index)"],"userId":"u\#(index)"}"#
                let held = try stack.request("POST", "/hold", body: body)
                #expect(held.status == 201, "\(held.text)")
                let again = try stack.request("POST", "/hold", body: body)
                #expect(again.status == 409 && again.text.contains("SEAT_UNAVAILABLE"), "\(again.text)")
                let holdID = try #require(held.json["holdId"] as? String)
                #expect(try stack.request("GET", "/holds/\(holdID)").status == 200)
                #expect(try stack.request("GET", "/holds/missing-\(index)").status == 404)
                #expect(try stack.request("GET", "/availability?showtimeId=\(showtime)").status == 200)
                #expect(try stack.request("GET", "/healthz").status == 200)
                #expect(try stack.request("GET", "/nowhere").status == 404)
                #expect(try stack.request("POST", "/hold", body: "{").status == 400)
                expected += 8
            }
            #expect(stack.facade.map(\.accessLogDropped) == 0)
            sink.open()
            try sink.waitForLines { lines in lines.filter { $0.contains("http.status=") }.count >= expected + 2 }
        }
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProcess("/usr/bin/env", arguments, currentDirectory: Repository.root.path)
    }
}
