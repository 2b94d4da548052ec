import Foundation
import HTTPFacade
import TestSupport
import Testing

/// The venue routes over real HTTP against the real core, PostgreSQL, Redis and RabbitMQ (issue 15): seat
/// maps with metadata, best-available holds, extensions by the owner only, seat history for admins only.
@Suite("Venue routes over REST", .serialized)
struct VenueRoutesTests {
    static let userA = "user_456"
    static let userB = "user_789"

    @Test(
        "PUT seats with metadata, POST /hold with quantity, POST /holds/{id}/extend by its owner, GET a seat's history as an admin"
    )
    func venueRoutes() async throws {
        try await withStack(holdTTLSeconds: 2) { stack in
            let showtime = "venue-\(UUID().uuidString.prefix(8).lowercased())"
            let seats = (1...6).map { n in
                #"{"seatId":"A\#(n)","section":"Stalls","row":"A","number":\#(n),"category":"premium","rank":1}"#
            }
            let defined = try stack.request(
                "PUT",
                "/showtimes/\(showtime)/seats",
                body: #"{"seats":[\#(seats.joined(separator: ","))]}"#
            )
            #expect(defined.status == 200 && defined.json["added"] as? Int == 6, "\(defined.text)")
            let availability = try stack.request("GET", "/availability?showtimeId=\(showtime)", token: nil)
            let first = try #require((availability.json["availability"] as? [[String: Any]])?.first)
            #expect(
                first["section"] as? String == "Stalls" && first["row"] as? String == "A"
                    && first["number"] as? Int == 1
            )

            let tokenA = Stack.token(Self.userA)
            let held = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","quantity":2,"together":true}"#,
                token: tokenA
            )
            #expect(held.status == 201, "\(held.text)")
            #expect(held.json["seatIds"] as? [String] == ["A3", "A4"] && held.json["userId"] as? String == Self.userA)
            let holdID = try #require(held.json["holdId"] as? String)
            let none = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","quantity":5,"together":true}"#,
                token: tokenA
            )
            #expect(
                none.status == 409
                    && (none.json["error"] as? [String: Any])?["details"] as? [String: Int] == ["quantity": 5]
            )

            let other = try stack.request("POST", "/holds/\(holdID)/extend", token: Stack.token(Self.userB))
            #expect(other.status == 403, "\(other.text)")
            #expect(try stack.request("POST", "/holds/\(holdID)/extend", token: nil).status == 401)
            var extended = false
            for _ in 0..<40 where !extended {
                let answer = try stack.request("POST", "/holds/\(holdID)/extend", token: tokenA)
                #expect(answer.status == 200, "\(answer.text)")
                extended = answer.json["expiresAt"] as? String != held.json["expiresAt"] as? String
                if !extended { Thread.sleep(forTimeInterval: 0.05) }
            }
            #expect(extended)

            let path = "/showtimes/\(showtime)/seats/A3/history"
            let refused = try stack.request("GET", path, token: tokenA)
            #expect(refused.status == 403 && refused.header("WWW-Authenticate")?.contains("insufficient_scope") == true)
            let history = try stack.request("GET", path + "?limit=10")
            #expect(history.status == 200, "\(history.text)")
            let types = (history.json["entries"] as? [[String: Any]])?.compactMap { $0["type"] as? String }
            #expect(types == ["hold.extended", "hold.created"])
            let bad = try stack.request("GET", path + "?limit=ten")
            #expect(
                bad.status == 400
                    && (bad.json["error"] as? [String: Any])?["details"].map { "\($0)" }?.contains("limit") == true
            )
            #expect(try stack.request("GET", "/showtimes/\(showtime)/seats/Z9/history").status == 422)
        }
    }
}
