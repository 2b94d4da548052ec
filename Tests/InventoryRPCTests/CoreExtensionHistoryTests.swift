import Contracts
import Foundation
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// Hold extensions and seat history over AMQP (issue 15 items 3 and 4; decisions 0018 and 0019).
    @Suite("Hold extension and seat history")
    struct ExtensionHistoryTests {
        static func extend(_ core: CoreHarness, _ holdID: String, user: String? = "u1") async throws -> RPCAnswer {
            try await core.client.call(.holdExtend, HoldExtendRequest(holdId: holdID, userId: user))
        }

        static func history(
            _ core: CoreHarness,
            _ showtimeID: String,
            _ seatID: String,
            limit: Int? = nil,
            before: Int64? = nil
        ) async throws -> SeatHistory {
            try await core.client.call(
                .seatHistory,
                SeatHistoryRequest(showtimeId: showtimeID, seatId: seatID, limit: limit, before: before)
            ).decode(SeatHistory.self).result.get()
        }

        @Test(
            "the owner extends a hold to min(now + HOLD_TTL, created + MAX_HOLD); hold.extended names its seats with new versions; then EXTENSION_LIMIT, HOLD_NOT_OWNED, HOLD_NOT_ACTIVE"
        )
        func extensionByOwner() async throws {
            try await withCore(holdTTL: 3, maxHoldSeconds: 5) { core in
                let showtimeID = try await core.showtime(seats: 3)
                let hold = try await core.hold(showtimeID, ["s1", "s2"]).decode(Hold.self).result.get()
                let created = try core.query(
                    "SELECT (extract(epoch FROM created_at) * 1000)::bigint AS ms FROM holds WHERE hold_id = $1",
                    [hold.holdId]
                )
                let cap = floor(Double(Int64(created[0]["ms"]!)!) / 1000 + 5)

                #expect(try await Self.extend(core, hold.holdId, user: "someone-else").errorCode == .holdNotOwned)
                // Wait (bounded) until an extension moves expiresAt: a second after the hold was made.
                var extended: Hold?
                for _ in 0..<60 {
                    let answer = try await Self.extend(core, hold.holdId).decode(Hold.self).result.get()
                    if answer.expiresAt > hold.expiresAt {
                        extended = answer
                        break
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let moved = try #require(extended)
                #expect(moved.expiresAt.timeIntervalSince1970 <= cap)
                #expect(moved.status == .active)

                let event = await core.events.wait { events in
                    events.contains { $0.type == .holdExtended && $0.holdId == hold.holdId }
                }
                #expect(event)
                let first = try #require(
                    core.events.unique.first { $0.type == .holdExtended && $0.holdId == hold.holdId }
                )
                #expect(first.seatIds == ["s1", "s2"] && first.seatVersions == ["s1": 2, "s2": 2])
                #expect(first.expiresAt != nil && first.expiresAt! > hold.expiresAt)
                let availability = try await core.client.call(
                    .availability,
                    AvailabilityRequest(showtimeId: showtimeID)
                )
                .decode(Availability.self).result.get()
                let s1 = try #require(availability.availability.first { $0.seatId == "s1" })
                #expect(s1.version >= 2 && s1.holdExpiresAt! > hold.expiresAt)

                // Up to the cap, then EXTENSION_LIMIT.
                var limited = false
                for _ in 0..<100 {
                    let answer = try await Self.extend(core, hold.holdId)
                    if answer.errorCode == .extensionLimit {
                        limited = true
                        break
                    }
                    let now = try answer.decode(Hold.self).result.get()
                    #expect(now.expiresAt.timeIntervalSince1970 <= cap)
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(limited)

                _ = try await core.client.call(.release, ReleaseRequest(holdId: hold.holdId, userId: "u1"))
                #expect(try await Self.extend(core, hold.holdId).errorCode == .holdNotActive)
                #expect(try await Self.extend(core, "hold_nope").errorCode == .holdNotFound)
                try await checkSeatVersions(core, showtimeID: showtimeID)
            }
        }

        @Test("an expired hold is not extended (HOLD_EXPIRED); the lazy expiry and the sweep honour an extension")
        func expiredAndSweep() async throws {
            try await withCore(holdTTL: 2, expiryInterval: 1, maxHoldSeconds: 60) { core in
                let showtimeID = try await core.showtime(seats: 2)
                let dead = try await core.hold(showtimeID, ["s1"]).decode(Hold.self).result.get()
                let kept = try await core.hold(showtimeID, ["s2"], user: "u2").decode(Hold.self).result.get()
                var extended: Hold?
                for _ in 0..<40 where extended == nil {
                    let answer = try await Self.extend(core, kept.holdId, user: "u2").decode(Hold.self).result.get()
                    if answer.expiresAt > kept.expiresAt { extended = answer }
                    try await Task.sleep(for: .milliseconds(50))
                }
                _ = try #require(extended)
                try await CoreServiceTests.SeatVersionTests.waitPast(kept.expiresAt, core: core)
                try await CoreServiceTests.SeatVersionTests.waitPast(dead.expiresAt, core: core)
                // Past its first expiry the extended hold is live, and extends again.
                let longer = try await Self.extend(core, kept.holdId, user: "u2").decode(Hold.self).result.get()
                #expect(longer.expiresAt > kept.expiresAt && longer.status == .active)
                #expect(try await Self.extend(core, dead.holdId).errorCode == .holdExpired)
                // Its seat reads held, and a new hold of it fails.
                let availability = try await core.client.call(
                    .availability,
                    AvailabilityRequest(showtimeId: showtimeID)
                )
                .decode(Availability.self).result.get()
                #expect(availability.availability.first { $0.seatId == "s2" }?.state == .held)
                #expect(try await core.hold(showtimeID, ["s2"], user: "u3").errorCode == .seatUnavailable)
                // The sweep expires the dead one, not the extended one.
                let swept = await core.events.wait {
                    $0.contains { $0.type == .holdExpired && $0.holdId == dead.holdId }
                }
                #expect(swept)
                let status = try core.query("SELECT status FROM holds WHERE hold_id = $1", [kept.holdId])
                #expect(status.first?["status"] == "active" || Date() >= longer.expiresAt)
            }
        }

        @Test(
            "the history of a seat after hold, expiry, hold, purchase (and a hold that overtook a dead one) matches the events in order, newest first, paged"
        )
        func history() async throws {
            try await withCore(holdTTL: 1, expiryInterval: 1) { core in
                let showtimeID = try await core.showtime(seats: 2)
                let first = try await core.hold(showtimeID, ["s1"], user: "ann").decode(Hold.self).result.get()
                let swept = await core.events.wait {
                    $0.contains { $0.type == .holdExpired && $0.holdId == first.holdId }
                }
                #expect(swept)
                let second = try await core.hold(showtimeID, ["s1"], user: "bob").decode(Hold.self).result.get()
                _ = try await core.client.call(
                    .purchase,
                    PurchaseRequest(holdId: second.holdId, orderId: "order-1", userId: "bob")
                ).decode(Hold.self).result.get()
                let purchased = await core.events.wait {
                    $0.contains { $0.type == .seatsPurchased && $0.holdId == second.holdId }
                }
                #expect(purchased)

                let history = try await Self.history(core, showtimeID, "s1")
                let events = core.events.unique.filter { $0.showtimeId == showtimeID && $0.seatIds.contains("s1") }
                    .sorted { $0.seatVersions["s1"]! > $1.seatVersions["s1"]! }
                #expect(history.entries.map(\.type) == [.seatsPurchased, .holdCreated, .holdExpired, .holdCreated])
                #expect(history.entries.map(\.type) == events.map(\.type))
                #expect(history.entries.map(\.version) == events.map { $0.seatVersions["s1"]! })
                #expect(history.entries.map(\.holdId) == events.map(\.holdId))
                #expect(history.entries.map(\.userId) == ["bob", "bob", "ann", "ann"])
                #expect(history.entries.first?.orderId == "order-1" && history.entries.first?.state == .purchased)
                #expect(history.entries[2].occurredAt == first.expiresAt, "an expiry takes effect at expiresAt")
                #expect(history.nextBefore == nil)

                let page = try await Self.history(core, showtimeID, "s1", limit: 3)
                #expect(page.entries.count == 3 && page.nextBefore == page.entries.last?.version)
                let rest = try await Self.history(core, showtimeID, "s1", limit: 3, before: page.nextBefore)
                #expect(rest.entries.map(\.version) == [history.entries[3].version] && rest.nextBefore == nil)

                #expect(try await Self.history(core, showtimeID, "s2").entries.isEmpty)
                let unknown = try await core.client.call(
                    .seatHistory,
                    SeatHistoryRequest(showtimeId: showtimeID, seatId: "s9")
                )
                #expect(unknown.errorCode == .unknownSeats)
                let noShow = try await core.client.call(
                    .seatHistory,
                    SeatHistoryRequest(showtimeId: "nope", seatId: "s1")
                )
                #expect(noShow.errorCode == .showtimeNotFound)
            }
        }

        @Test(
            "a hold that takes a dead hold's seat before the sweep: the history has the expiry the events do not name"
        )
        func overtakenExpiry() async throws {
            try await withCore(holdTTL: 1, expiryInterval: 3600) { core in
                let showtimeID = try await core.showtime(seats: 1)
                let first = try await core.hold(showtimeID, ["s1"], user: "ann").decode(Hold.self).result.get()
                try await CoreServiceTests.SeatVersionTests.waitPast(first.expiresAt, core: core)
                let second = try await core.hold(showtimeID, ["s1"], user: "bob").decode(Hold.self).result.get()
                let history = try await Self.history(core, showtimeID, "s1")
                #expect(history.entries.map(\.type) == [.holdCreated, .holdExpired, .holdCreated])
                #expect(history.entries.map(\.version) == [3, 2, 1])
                #expect(history.entries.map(\.holdId) == [second.holdId, first.holdId, first.holdId])
                #expect(history.entries[1].state == .available && history.entries[1].occurredAt == first.expiresAt)
            }
        }
    }
}
