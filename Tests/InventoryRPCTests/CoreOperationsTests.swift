import AMQPClient
import Contracts
import Foundation
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// Every operation over AMQP RPC against a real core: happy paths, error codes, events.
    @Suite("Core RPC operations")
    struct CoreOperationsTests {
        @Test("ping, seats.define, hold, hold.get, availability, release and purchase answer as INTERFACE.md says")
        func happyPaths() async throws {
            try await withCore { core in
                let ping = try await core.client.call(.ping, body: Array("{}".utf8))
                #expect(try ping.decode(PingReply.self).result.get().status == "ok")

                let showtimeID = "show-\(uniqueID())"
                let defined = try await core.client.call(
                    .seatsDefine,
                    SeatsDefineRequest(showtimeId: showtimeID, seatIds: ["s1", "s2", "s3"])
                )
                #expect(
                    try defined.decode(SeatsDefined.self).result.get()
                        == SeatsDefined(showtimeId: showtimeID, seatCount: 3, added: 3)
                )
                let again = try await core.client.call(
                    .seatsDefine,
                    SeatsDefineRequest(showtimeId: showtimeID, seatIds: ["s1", "s2", "s3", "s4"])
                )
                #expect(
                    try again.decode(SeatsDefined.self).result.get()
                        == SeatsDefined(showtimeId: showtimeID, seatCount: 4, added: 1)
                )

                let before = Date()
                let created = try await core.hold(showtimeID, ["s2", "s1"], user: "alice")
                #expect(created.properties.contentType == "application/json")
                #expect(!created.isReplayed)
                let hold = try created.decode(Hold.self).result.get()
                #expect(hold.holdId.hasPrefix("hold_") && hold.holdId.count == 37)
                #expect(hold.status == .active && hold.seatIds == ["s2", "s1"] && hold.userId == "alice")
                #expect(
                    hold.expiresAt > before.addingTimeInterval(290) && hold.expiresAt < before.addingTimeInterval(310)
                )

                let fetched = try await core.client.call(.holdGet, HoldGetRequest(holdId: hold.holdId))
                #expect(try fetched.decode(Hold.self).result.get() == hold)

                let availability = try await core.client.call(
                    .availability,
                    AvailabilityRequest(showtimeId: showtimeID)
                )
                let seats = try availability.decode(Availability.self).result.get()
                #expect(seats.availability.map(\.seatId) == ["s1", "s2", "s3", "s4"])
                #expect(seats.availability.map(\.state) == [.held, .held, .available, .available])
                #expect(seats.availability[0].holdExpiresAt == hold.expiresAt)
                #expect(seats.availability[2].holdExpiresAt == nil)
                #expect(seats.summary == AvailabilitySummary(available: 2, held: 2, purchased: 0))

                let released = try await core.client.call(
                    .release,
                    ReleaseRequest(holdId: hold.holdId, userId: "alice")
                )
                #expect(try released.decode(Hold.self).result.get().status == .released)
                let releasedAgain = try await core.client.call(.release, ReleaseRequest(holdId: hold.holdId))
                #expect(try releasedAgain.decode(Hold.self).result.get().status == .released)

                // The released seats are holdable at once (their Redis locks went with the release).
                let second = try await core.hold(showtimeID, ["s1", "s2"], user: "bob")
                let secondHold = try second.decode(Hold.self).result.get()
                let purchased = try await core.client.call(
                    .purchase,
                    PurchaseRequest(holdId: secondHold.holdId, orderId: "order-1", userId: "bob")
                )
                let sold = try purchased.decode(Hold.self).result.get()
                #expect(sold.status == .purchased && sold.orderId == "order-1")
                let purchasedAgain = try await core.client.call(
                    .purchase,
                    PurchaseRequest(holdId: secondHold.holdId, orderId: "order-1")
                )
                #expect(try purchasedAgain.decode(Hold.self).result.get().status == .purchased)

                let final = try await core.client.call(.availability, AvailabilityRequest(showtimeId: showtimeID))
                #expect(
                    try final.decode(Availability.self).result.get().summary
                        == AvailabilitySummary(available: 2, held: 0, purchased: 2)
                )

                // Events: created, released, created, purchased; once each after de-duplication, in per-hold order.
                let complete = await core.events.wait { $0.count >= 4 }
                #expect(complete)
                let events = core.events.unique
                #expect(events.map(\.type) == [.holdCreated, .holdReleased, .holdCreated, .seatsPurchased])
                #expect(events[0].holdId == hold.holdId && events[0].expiresAt == hold.expiresAt)
                #expect(
                    events[0].seatIds == ["s2", "s1"] && events[0].userId == "alice"
                        && events[0].showtimeId == showtimeID
                )
                #expect(events[3].orderId == "order-1")
                let message = try #require(core.events.messages.first)
                #expect(message.properties.persistent && message.properties.contentType == "application/json")
                #expect(message.properties.messageID == events[0].eventId && message.routingKey == "hold.created")
                try await checkEventsMatchOutbox(core)
            }
        }

        @Test("each error code of the operations comes back with its details")
        func errorCodes() async throws {
            try await withCore { core in
                let showtimeID = try await core.showtime(seats: 12)

                func code(_ answer: RPCAnswer) -> ErrorCode? { answer.errorCode }

                #expect(code(try await core.hold("show-missing-\(uniqueID())", ["s1"])) == .showtimeNotFound)
                let unknown = try await core.hold(showtimeID, ["s1", "s99", "x"])
                #expect(unknown.errorCode == .unknownSeats)
                #expect(unknown.error?.details?["seatIds"] == .array(["s99", "x"]))

                let first = try await core.hold(showtimeID, ["s1", "s2"], user: "alice")
                let hold = try first.decode(Hold.self).result.get()
                let conflict = try await core.hold(showtimeID, ["s3", "s2"], user: "bob")
                #expect(conflict.errorCode == .seatUnavailable)
                #expect(conflict.error?.details?["seatIds"] == .array(["s2"]))
                // All or nothing: s3 was not taken by the failed hold.
                #expect(try await core.hold(showtimeID, ["s3"], user: "bob").errorCode == nil)

                #expect(code(try await core.hold(showtimeID, [])) == .validationFailed)
                #expect(code(try await core.hold(showtimeID, ["s5", "s5"])) == .validationFailed)
                #expect(code(try await core.hold(showtimeID, (1...11).map { "s\($0)" })) == .validationFailed)
                #expect(code(try await core.hold(showtimeID, ["bad seat"])) == .validationFailed)
                #expect(code(try await core.client.call(.hold, body: Array("{not json".utf8))) == .validationFailed)
                let missing = try await core.client.call(
                    .hold,
                    body: Array(#"{"showtimeId":"x","seatIds":["s1"]}"#.utf8)
                )
                #expect(missing.errorCode == .validationFailed)
                #expect(missing.error?.details?["field"] == "userId")
                let mismatch = try await core.hold(
                    showtimeID,
                    ["s6"],
                    key: "key-a",
                    headers: ["idempotency-key": .string("key-b")]
                )
                #expect(mismatch.errorCode == .validationFailed)

                #expect(
                    code(try await core.client.call(.holdGet, HoldGetRequest(holdId: "hold_nope"))) == .holdNotFound
                )
                #expect(
                    code(
                        try await core.client.call(.availability, AvailabilityRequest(showtimeId: "nope-\(uniqueID())"))
                    ) == .showtimeNotFound
                )
                #expect(
                    code(try await core.client.call(.release, ReleaseRequest(holdId: "hold_nope"))) == .holdNotFound
                )
                #expect(
                    code(try await core.client.call(.release, ReleaseRequest(holdId: hold.holdId, userId: "mallory")))
                        == .holdNotOwned
                )
                #expect(
                    code(
                        try await core.client.call(
                            .purchase,
                            PurchaseRequest(holdId: hold.holdId, orderId: "o1", userId: "mallory")
                        )
                    ) == .holdNotOwned
                )

                #expect(
                    code(try await core.client.call(.purchase, PurchaseRequest(holdId: hold.holdId, orderId: "o1")))
                        == nil
                )
                #expect(
                    code(try await core.client.call(.purchase, PurchaseRequest(holdId: hold.holdId, orderId: "o2")))
                        == .holdNotActive
                )
                #expect(
                    code(try await core.client.call(.release, ReleaseRequest(holdId: hold.holdId))) == .holdNotActive
                )

                let other = try await core.hold(showtimeID, ["s7"]).decode(Hold.self).result.get()
                #expect(code(try await core.client.call(.release, ReleaseRequest(holdId: other.holdId))) == nil)
                #expect(
                    code(try await core.client.call(.purchase, PurchaseRequest(holdId: other.holdId, orderId: "o3")))
                        == .holdNotActive
                )

                // Purchased seats stay unavailable.
                #expect(try await core.hold(showtimeID, ["s1"]).errorCode == .seatUnavailable)
                #expect(
                    code(
                        try await core.client.call(.seatsDefine, body: Array(#"{"showtimeId":"x","seatIds":[]}"#.utf8))
                    ) == .validationFailed
                )
            }
        }

        @Test("the ops port serves /healthz, /readyz and /metrics")
        func opsPort() async throws {
            try await withCore { core in
                let port = try #require(core.core?.opsPort)
                _ = try await core.client.call(.ping, body: Array("{}".utf8))
                #expect(try httpGet(port: port, path: "/healthz").status == 200)
                // Workers connect on their own threads; readiness follows within a moment.
                var ready = 0
                for _ in 0..<50 {
                    ready = try httpGet(port: port, path: "/readyz").status
                    if ready == 200 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(ready == 200)
                let metrics = try httpGet(port: port, path: "/metrics")
                #expect(metrics.status == 200)
                for name in [
                    "inventory_rpc_requests_total", "inventory_rpc_duration_seconds", "inventory_outbox_lag_seconds",
                ] {
                    #expect(metrics.body.contains(name), "\(name) in /metrics")
                }
                #expect(try httpGet(port: port, path: "/nope").status == 404)
            }
        }
    }
}
