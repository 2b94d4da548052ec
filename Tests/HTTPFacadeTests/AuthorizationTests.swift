import Foundation
import HTTPFacade
import TestSupport
import Testing

/// Who may do what, over real HTTP against the real core, PostgreSQL, Redis and RabbitMQ: every
/// protected route refuses every kind of bad token as INTERFACE.md says and changes nothing; users act
/// only on their own holds; scopes gate purchase and seat maps. Serialized: they share the machine's cores.
@Suite("Authorization over REST: tokens, scopes, owners", .serialized)
struct AuthorizationTests {
    static let userA = "user_456"
    static let userB = "user_789"

    /// The bad tokens every protected route must refuse, with the answer each must get.
    static func badTokens() throws -> [(name: String, token: String?, challenge: String)] {
        let other = TokenMinter.hs256Blocking(secret: "some-other-secret-0123456789abcdef012345")
        let now = Int(Date().timeIntervalSince1970)
        let claims: [String: Any] = [
            "sub": userA, "exp": now + 600, "iss": Stack.issuer, "aud": Stack.audience,
            "scope": "inventory:admin inventory:purchase",
        ]
        var expired = claims
        expired["exp"] = now - 120
        var wrongAudience = claims
        wrongAudience["aud"] = "some-other-service"
        var wrongIssuer = claims
        wrongIssuer["iss"] = "https://evil.example"
        let unsigned =
            try TokenMinter.encodedSegment(["alg": "none", "typ": "JWT"]) + "." + TokenMinter.encodedSegment(claims)
            + "."
        let invalid = #"Bearer error="invalid_token""#
        return [
            ("no token", nil, "Bearer"),
            ("expired", try Stack.minter.sign(header: ["alg": "HS256", "typ": "JWT"], claims: expired), invalid),
            (
                "signed with another key", try other.sign(header: ["alg": "HS256", "typ": "JWT"], claims: claims),
                invalid
            ),
            ("alg none", unsigned, invalid),
            ("wrong audience", try Stack.minter.sign(header: ["alg": "HS256"], claims: wrongAudience), invalid),
            ("wrong issuer", try Stack.minter.sign(header: ["alg": "HS256"], claims: wrongIssuer), invalid),
            ("malformed", "not.a.jwt", invalid),
        ]
    }

    /// Everything the database says about a showtime and a hold, through the admin's eyes.
    static func snapshot(_ stack: Stack, showtime: String, holdID: String) throws -> String {
        let availability = try stack.request("GET", "/availability?showtimeId=\(showtime)")
        let hold = try stack.request("GET", "/holds/\(holdID)")
        guard availability.status == 200, hold.status == 200 else {
            throw TestFailure("snapshot: \(availability.text) \(hold.text)")
        }
        return availability.text + "\n" + hold.text
    }

    @Test(
        "every protected route refuses a missing, expired, forged, unsigned, mis-addressed or malformed token, changing nothing"
    )
    func badTokensChangeNothing() async throws {
        try await withStack { stack in
            let showtime = try stack.showtime(seats: 4)
            let held = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s1"]}"#,
                token: Stack.token(Self.userA)
            )
            #expect(held.status == 201 && held.json["userId"] as? String == Self.userA, "\(held.text)")
            let holdID = try #require(held.json["holdId"] as? String)
            let before = try Self.snapshot(stack, showtime: showtime, holdID: holdID)

            let routes: [(String, String, String?)] = [
                ("POST", "/hold", #"{"showtimeId":"\#(showtime)","seatIds":["s2"],"userId":"\#(Self.userA)"}"#),
                ("POST", "/release", #"{"holdId":"\#(holdID)","userId":"\#(Self.userA)"}"#),
                ("POST", "/purchase", #"{"holdId":"\#(holdID)","orderId":"o-1","userId":"\#(Self.userA)"}"#),
                ("GET", "/holds/\(holdID)", nil),
                ("PUT", "/showtimes/\(showtime)/seats", #"{"seatIds":["s9"]}"#),
            ]
            for (name, token, challenge) in try Self.badTokens() {
                for (method, path, body) in routes {
                    let response = try stack.request(method, path, body: body, token: token)
                    let what = "\(name): \(method) \(path)"
                    #expect(response.status == 401, "\(what): \(response.text)")
                    #expect(response.errorCode == "UNAUTHENTICATED", "\(what)")
                    let header = response.header("www-authenticate") ?? ""
                    #expect(
                        challenge == "Bearer" ? header == "Bearer" : header.hasPrefix(challenge),
                        "\(what): \(header)"
                    )
                }
            }
            #expect(try Self.snapshot(stack, showtime: showtime, holdID: holdID) == before)
            // The public routes need no token.
            #expect(try stack.request("GET", "/availability?showtimeId=\(showtime)", token: nil).status == 200)
            #expect(try stack.request("GET", "/healthz", token: nil).status == 200)
            #expect(try stack.request("GET", "/readyz", token: nil).status == 200)
        }
    }

    @Test("a missing scope is 403 insufficient_scope; another user's userId is 403 FORBIDDEN; nothing changes")
    func scopesAndUsers() async throws {
        try await withStack { stack in
            let showtime = try stack.showtime(seats: 4)
            let tokenA = Stack.token(Self.userA)
            let held = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s1"]}"#,
                token: tokenA
            )
            let holdID = try #require(held.json["holdId"] as? String)
            let before = try Self.snapshot(stack, showtime: showtime, holdID: holdID)

            // Missing scope: a user purchasing, a purchase-scoped service changing a seat map.
            let purchase = try stack.request(
                "POST",
                "/purchase",
                body: #"{"holdId":"\#(holdID)","orderId":"o-1","userId":"\#(Self.userA)"}"#,
                token: tokenA
            )
            #expect(purchase.status == 403 && purchase.errorCode == "FORBIDDEN", "\(purchase.text)")
            #expect(
                purchase.header("www-authenticate") == #"Bearer error="insufficient_scope", scope="inventory:purchase""#
            )
            let orders = Stack.token("orders-service", scopes: [Scope.purchase])
            let define = try stack.request(
                "PUT",
                "/showtimes/\(showtime)/seats",
                body: #"{"seatIds":["s9"]}"#,
                token: orders
            )
            #expect(define.status == 403 && define.errorCode == "FORBIDDEN", "\(define.text)")
            #expect(define.header("www-authenticate") == #"Bearer error="insufficient_scope", scope="inventory:admin""#)

            // Wrong user: a body userId other than sub.
            let holdForB = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s2"],"userId":"\#(Self.userB)"}"#,
                token: tokenA
            )
            #expect(holdForB.status == 403 && holdForB.errorCode == "FORBIDDEN", "\(holdForB.text)")
            #expect(holdForB.header("www-authenticate") == nil)
            let releaseAsB = try stack.request(
                "POST",
                "/release",
                body: #"{"holdId":"\#(holdID)","userId":"\#(Self.userB)"}"#,
                token: tokenA
            )
            #expect(releaseAsB.status == 403 && releaseAsB.errorCode == "FORBIDDEN", "\(releaseAsB.text)")
            // A purchase-scoped caller must name the hold's owner.
            let unnamed = try stack.request(
                "POST",
                "/purchase",
                body: #"{"holdId":"\#(holdID)","orderId":"o-1"}"#,
                token: orders
            )
            #expect(unnamed.status == 400 && unnamed.errorCode == "VALIDATION_FAILED", "\(unnamed.text)")

            #expect(try Self.snapshot(stack, showtime: showtime, holdID: holdID) == before)
        }
    }

    @Test(
        "user B cannot read, release or purchase user A's hold; the Orders Service can purchase it for A; an admin can release B's"
    )
    func owners() async throws {
        try await withStack { stack in
            let showtime = try stack.showtime(seats: 4)
            let tokenA = Stack.token(Self.userA)
            let tokenB = Stack.token(Self.userB)
            let orders = Stack.token("orders-service", scopes: [Scope.purchase])
            let admin = Stack.token("ops-admin", scopes: [Scope.admin])
            let held = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s1","s2"]}"#,
                token: tokenA
            )
            #expect(held.status == 201, "\(held.text)")
            let holdID = try #require(held.json["holdId"] as? String)
            let before = try Self.snapshot(stack, showtime: showtime, holdID: holdID)

            let read = try stack.request("GET", "/holds/\(holdID)", token: tokenB)
            #expect(read.status == 403 && read.errorCode == "HOLD_NOT_OWNED", "\(read.text)")
            let release = try stack.request("POST", "/release", body: #"{"holdId":"\#(holdID)"}"#, token: tokenB)
            #expect(release.status == 403 && release.errorCode == "HOLD_NOT_OWNED", "\(release.text)")
            let purchase = try stack.request(
                "POST",
                "/purchase",
                body: #"{"holdId":"\#(holdID)","orderId":"o-b","userId":"\#(Self.userB)"}"#,
                token: orders
            )
            #expect(purchase.status == 403 && purchase.errorCode == "HOLD_NOT_OWNED", "\(purchase.text)")
            #expect(try Self.snapshot(stack, showtime: showtime, holdID: holdID) == before)

            // The owner reads it; the Orders Service purchases it for its owner.
            let own = try stack.request("GET", "/holds/\(holdID)", token: tokenA)
            #expect(own.status == 200 && own.json["userId"] as? String == Self.userA)
            let bought = try stack.request(
                "POST",
                "/purchase",
                body: #"{"holdId":"\#(holdID)","orderId":"o-a","userId":"\#(Self.userA)"}"#,
                token: orders
            )
            #expect(bought.status == 200 && bought.json["status"] as? String == "purchased", "\(bought.text)")

            // An admin releases anyone's hold, without naming the owner, and reads it.
            let heldB = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s3"]}"#,
                token: tokenB
            )
            let holdB = try #require(heldB.json["holdId"] as? String)
            let released = try stack.request("POST", "/release", body: #"{"holdId":"\#(holdB)"}"#, token: admin)
            #expect(released.status == 200 && released.json["status"] as? String == "released", "\(released.text)")
            #expect(try stack.request("GET", "/holds/\(holdB)", token: admin).json["userId"] as? String == Self.userB)
            // B's own token sees its released hold.
            #expect(try stack.request("GET", "/holds/\(holdB)", token: tokenB).status == 200)
        }
    }

    @Test("AUTH_MODE=none keeps the seed's behaviour: no token, userId from the body")
    func authDisabled() async throws {
        try await withStack(authMode: .none) { stack in
            let showtime = try stack.showtime(seats: 2)
            let held = try stack.request(
                "POST",
                "/hold",
                body: #"{"showtimeId":"\#(showtime)","seatIds":["s1"],"userId":"anyone"}"#,
                token: nil
            )
            #expect(held.status == 201 && held.json["userId"] as? String == "anyone", "\(held.text)")
            let holdID = try #require(held.json["holdId"] as? String)
            #expect(try stack.request("GET", "/holds/\(holdID)", token: nil).status == 200)
        }
    }
}
