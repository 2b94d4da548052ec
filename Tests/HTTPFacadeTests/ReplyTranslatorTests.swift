import Contracts
import Testing

@testable import HTTPFacade

@Suite("Translating the core's replies") struct ReplyTranslatorTests {
    @Test("data becomes the body with the route's status; a replay adds Idempotent-Replayed")
    func success() throws {
        let reply =
            #"{"ok":true,"data":{"holdId":"h1","showtimeId":"s","userId":"u","seatIds":["a"],"status":"active","expiresAt":"2026-01-01T12:05:00Z"}}"#
        let answer = try ReplyTranslator.answer(route: .hold, replyBody: Array(reply.utf8), replayed: true).get()
        #expect(answer.status == 201)
        #expect(answer.headers.map(\.0) == ["Idempotent-Replayed"])
        let hold = try ContractJSON.decode(Hold.self, from: answer.body)
        #expect(hold.holdId == "h1" && hold.status == .active)
        let again = try ReplyTranslator.answer(route: .release, replyBody: Array(reply.utf8), replayed: false).get()
        #expect(again.status == 200 && again.headers.isEmpty)
    }

    @Test("an error reply becomes {error} with the table's status", arguments: ErrorCode.allCases)
    func errors(code: ErrorCode) throws {
        let reply = #"{"ok":false,"error":{"code":"\#(code.rawValue)","message":"m","details":{"seatIds":["a"]}}}"#
        let answer = try ReplyTranslator.answer(route: .hold, replyBody: Array(reply.utf8), replayed: false).get()
        #expect(answer.status == code.httpStatus)
        let body = try ContractJSON.decode(RESTErrorBody.self, from: answer.body)
        #expect(body.error.code == code)
        #expect(body.error.details == ["seatIds": ["a"]])
    }

    @Test("a replayed refusal (a key keeps its first answer) keeps its status and adds Idempotent-Replayed")
    func replayedRefusal() throws {
        let reply = #"{"ok":false,"error":{"code":"SEAT_UNAVAILABLE","message":"m","details":{"seatIds":["a"]}}}"#
        let answer = try ReplyTranslator.answer(route: .hold, replyBody: Array(reply.utf8), replayed: true).get()
        #expect(answer.status == 409)
        #expect(answer.headers.contains { $0.0 == "Idempotent-Replayed" && $0.1 == "true" })
        let fresh = try ReplyTranslator.answer(route: .hold, replyBody: Array(reply.utf8), replayed: false).get()
        #expect(!fresh.headers.contains { $0.0 == "Idempotent-Replayed" })
    }

    @Test(
        "an off-contract reply is a problem, not a body",
        arguments: [
            "", "{}", #"{"ok":false,"error":{"code":"NOPE","message":""}}"#, #"{"ok":true,"data":{"a":[1}}}"#,
            #"{"ok":true,"data":{"a":1}]"#, #"{"ok":true,"data":{"holdId":"h1""#,
        ]
    )
    func offContract(reply: String) {
        #expect(throws: ReplyProblem.self) {
            try ReplyTranslator.answer(route: .purchase, replyBody: Array(reply.utf8), replayed: false).get()
        }
    }
}
