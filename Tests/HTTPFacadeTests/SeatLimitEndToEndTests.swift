import Foundation
import TestSupport
import Testing

/// The per-user seat limit over REST (issue 14, decision 0015): what a browser sees.
@Suite("End to end: the per-user seat limit over REST", .serialized)
struct SeatLimitEndToEndTests {
    @Test(
        "one user's eleventh seat of a showtime is 409 SEAT_LIMIT_REACHED with limit and held (the contract's JSON); another user still holds"
    )
    func eleventhSeatRefused() async throws {
        try await withStack { stack in
            let showtime = uniqueName("show")
            let seats = (1...12).map { "a\($0)" }
            let list = seats.map { "\"\($0)\"" }.joined(separator: ",")
            let defined = try stack.request("PUT", "/showtimes/\(showtime)/seats", body: #"{"seatIds":[\#(list)]}"#)
            #expect(defined.status == 200)
            let bot = Stack.token("bot-1")
            for seat in seats.prefix(10) {
                let held = try stack.request(
                    "POST",
                    "/hold",
                    body: #"{"showtimeId":"\#(showtime)","seatIds":["\#(seat)"]}"#,
                    token: bot
                )
                #expect(held.status == 201)
            }
            let refused = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["a11"]}"#,
                token: bot
            )
            #expect(refused.status == 409)
            #expect(refused.header("content-type") == "application/json")
            let error = try #require(refused.json["error"] as? [String: Any])
            #expect(error["code"] as? String == "SEAT_LIMIT_REACHED")
            let details = try #require(error["details"] as? [String: Any])
            #expect(details["limit"] as? Int == 10 && details["held"] as? Int == 10)

            let other = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["a11"]}"#,
                token: Stack.token("buyer-2")
            )
            #expect(other.status == 201)
        }
    }
}
