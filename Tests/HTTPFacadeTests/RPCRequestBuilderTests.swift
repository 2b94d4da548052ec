import Contracts
import Foundation
import Testing

@testable import HTTPFacade

@Suite("Building RPC bodies: validation and the idempotency key rules") struct RPCRequestBuilderTests {
    let limits = RequestLimits(maxSeatsPerHold: 3)
    let hold = #"{"showtimeId":"s1","seatIds":["a1","a2"],"userId":"u1"}"#

    private func build(
        _ route: Route,
        body: String = "",
        parameter: String? = nil,
        query: [String: String] = [:],
        headers: [String: String] = [:]
    ) -> Result<JSONValue, ErrorBody> {
        RPCRequestBuilder.body(
            for: route,
            pathParameter: parameter,
            query: query,
            headers: headers,
            body: Array(body.utf8),
            limits: limits
        ).map { bytes in try! JSONDecoder().decode(JSONValue.self, from: Data(bytes)) }
    }

    private func problems(_ result: Result<JSONValue, ErrorBody>) -> [ValidationProblem] {
        guard case .failure(let error) = result else { return [] }
        #expect(error.code == .validationFailed)
        return error.validationProblems
    }

    private func key(_ result: Result<JSONValue, ErrorBody>) -> String? {
        guard case .success(.object(let object)) = result, case .string(let key)? = object["idempotencyKey"] else {
            return nil
        }
        return key
    }

    @Test("a valid hold passes as it came, without a key")
    func plainHold() throws {
        let value = try build(.hold, body: hold).get()
        #expect(value == ["showtimeId": "s1", "seatIds": ["a1", "a2"], "userId": "u1"])
    }

    @Test("a best-available hold (quantity) is validated as that form, with the header key merged in")
    func bestAvailableHold() throws {
        let body = #"{"showtimeId":"s1","quantity":2,"together":true,"userId":"u1"}"#
        let value = try build(.hold, body: body, headers: ["idempotency-key": "k-9"]).get()
        #expect(
            value == ["showtimeId": "s1", "quantity": 2, "together": true, "userId": "u1", "idempotencyKey": "k-9"]
        )
        #expect(
            problems(build(.hold, body: #"{"showtimeId":"s1","quantity":4,"userId":"u1"}"#)).map(\.rule) == ["maximum"]
        )
        #expect(
            problems(build(.hold, body: #"{"showtimeId":"s1","quantity":1,"seatIds":["a"],"userId":"u1"}"#))
                .map(\.field) == ["seatIds"]
        )
    }

    @Test("extend takes the hold from the path; history the showtime and seat from the path, the page from the query")
    func venueRoutes() throws {
        #expect(try build(.holdExtend, parameter: "h_1").get() == ["holdId": "h_1"])
        #expect(problems(build(.holdExtend, parameter: "")).map(\.field) == ["holdId"])
        let history = try build(.seatHistory, parameter: "s1/A1", query: ["limit": "5", "before": "9"]).get()
        #expect(history == ["showtimeId": "s1", "seatId": "A1", "limit": 5, "before": 9])
        #expect(problems(build(.seatHistory, parameter: "s1/A1", query: ["limit": "x"])).map(\.field) == ["limit"])
        #expect(problems(build(.seatHistory, parameter: "s1/A1", query: ["limit": "0"])).map(\.rule) == ["minimum"])
    }

    @Test("the Idempotency-Key header, or the seed's idempotencyKey header, goes into the RPC body")
    func headerKeyInBody() {
        #expect(key(build(.hold, body: hold, headers: ["idempotency-key": "k-1"])) == "k-1")
        #expect(key(build(.hold, body: hold, headers: ["idempotencykey": "k-2"])) == "k-2")
    }

    @Test("body and header keys that agree are fine")
    func agreeingKeys() {
        let body = #"{"showtimeId":"s1","seatIds":["a1"],"userId":"u1","idempotencyKey":"k"}"#
        #expect(key(build(.hold, body: body, headers: ["idempotency-key": "k", "idempotencykey": "k"])) == "k")
    }

    @Test("body and header keys that differ are 400 with rule mismatch on idempotencyKey")
    func differingKeys() {
        let body = #"{"showtimeId":"s1","seatIds":["a1"],"userId":"u1","idempotencyKey":"k"}"#
        let found = problems(build(.hold, body: body, headers: ["idempotency-key": "other"]))
        #expect(found.map(\.field) == ["idempotencyKey"])
        #expect(found.map(\.rule) == ["mismatch"])
    }

    @Test("the two header spellings that differ are 400 too")
    func differingHeaders() {
        let found = problems(build(.hold, body: hold, headers: ["idempotency-key": "a", "idempotencykey": "b"]))
        #expect(found.map(\.rule) == ["mismatch"])
        #expect(found.map(\.field) == ["idempotencyKey"])
    }

    @Test("a header key that is not an identifier is 400 naming the header")
    func badHeaderKey() {
        #expect(
            problems(build(.hold, body: hold, headers: ["idempotency-key": "has space"])).map(\.field) == [
                "idempotencyKey"
            ]
        )
        #expect(problems(build(.hold, body: hold, headers: ["idempotency-key": ""])).map(\.rule) == ["pattern"])
    }

    @Test(
        "bad input never becomes an RPC",
        arguments: [
            ("not json", "$", "json"),
            (#"[1,2]"#, "$", "type"),
            (#"{"showtimeId":"s1","seatIds":[],"userId":"u1"}"#, "seatIds", "minItems"),
            (#"{"showtimeId":"s1","seatIds":["a","a"],"userId":"u1"}"#, "seatIds", "uniqueItems"),
            (#"{"showtimeId":"s1","seatIds":["a","b","c","d"],"userId":"u1"}"#, "seatIds", "maxItems"),
            (#"{"showtimeId":"s 1","seatIds":["a"],"userId":"u1"}"#, "showtimeId", "pattern"),
            (#"{"showtimeId":"s1","seatIds":"a","userId":"u1"}"#, "seatIds", "type"),
            (#"{"showtimeId":"s1","seatIds":["a"]}"#, "userId", "required"),
            (#"{"showtimeId":"s1","seatIds":[1],"userId":"u1"}"#, "seatIds[0]", "type"),
        ]
    )
    func badHolds(body: String, field: String, rule: String) {
        let found = problems(build(.hold, body: body))
        #expect(found.first?.field == field)
        #expect(found.first?.rule == rule)
    }

    @Test("an empty property name is reported at a field the error schema accepts")
    func emptyFieldName() {
        let found = problems(build(.hold, body: #"{"": null}"#))
        #expect(found.allSatisfy { !$0.field.isEmpty })
        #expect(found.map(\.field).contains("\"\""))
    }

    @Test("path and query parameters are validated as identifiers")
    func pathAndQuery() {
        #expect(problems(build(.holdGet, parameter: "")).map(\.field) == ["holdId"])
        #expect(problems(build(.holdGet, parameter: "a/b")).map(\.field) == ["holdId"])
        #expect((try? build(.holdGet, parameter: "h_1").get()) == ["holdId": "h_1"])
        #expect(problems(build(.availability)).map(\.rule) == ["required"])
        #expect(problems(build(.availability, query: ["showtimeId": "x y"])).map(\.field) == ["showtimeId"])
        #expect((try? build(.availability, query: ["showtimeId": "s1", "other": "1"]).get()) == ["showtimeId": "s1"])
    }

    @Test("seat definitions take the showtime from the path and report path and body problems together")
    func seatsDefine() {
        #expect(
            (try? build(.seatsDefine, body: #"{"seatIds":["a","b"]}"#, parameter: "s1").get())
                == ["showtimeId": "s1", "seatIds": ["a", "b"]]
        )
        let found = problems(build(.seatsDefine, body: #"{"seatIds":[]}"#, parameter: "bad id"))
        #expect(found.map(\.field) == ["showtimeId", "seatIds"])
        // The per-hold limit does not apply to a seat map.
        let many = "{\"seatIds\":[" + (1...50).map { "\"s\($0)\"" }.joined(separator: ",") + "]}"
        #expect((try? build(.seatsDefine, body: many, parameter: "s1").get()) != nil)
    }

    @Test("release and purchase bodies are checked against their schemas")
    func releaseAndPurchase() {
        #expect((try? build(.release, body: #"{"holdId":"h"}"#).get()) == ["holdId": "h"])
        #expect(problems(build(.release, body: #"{"holdId":"h","extra":1}"#)).map(\.rule) == ["additionalProperties"])
        #expect(problems(build(.purchase, body: #"{"holdId":"h"}"#)).map(\.field) == ["orderId"])
    }
}
