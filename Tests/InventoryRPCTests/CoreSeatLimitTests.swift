import AMQPClient
import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// The per-user seat limit (INTERFACE.md "Limits", decision 0015) over AMQP. The race itself is shown at the
    /// store, with a control that counts without the lock: `StorageSeatLimitTests`.
    @Suite("Core per-user seat limit")
    struct CoreSeatLimitTests {
        @Test(
            "50 concurrent holds of one seat each by one user, limit 10: exactly 10 succeed, 40 are SEAT_LIMIT_REACHED with limit 10 and held 10, and the database agrees"
        )
        func fiftyConcurrentHolds() async throws {
            try await withCore(workers: 8, processes: 1, maxSeatsPerUser: 10) { core in
                let showtimeID = try await core.showtime(seats: 60)
                let answers = try await withThrowingTaskGroup(of: RPCAnswer.self) { group in
                    for index in 1...50 {
                        group.addTask { try await core.hold(showtimeID, ["s\(index)"], user: "greedy") }
                    }
                    var answers: [RPCAnswer] = []
                    for try await answer in group { answers.append(answer) }
                    return answers
                }
                let won = answers.filter { $0.errorCode == nil }
                let refused = answers.filter { $0.errorCode == .seatLimitReached }
                #expect(won.count == 10, "\(answers.map { $0.errorCode?.rawValue ?? "ok" })")
                #expect(refused.count == 40)
                for answer in refused {
                    #expect(answer.error?.details?["limit"] == .number(10))
                    #expect(answer.error?.details?["held"] == .number(10))
                }
                // The database agrees: ten live holds of one seat, ten seats held, ten hold.created events, and
                // nothing else written for the refusals.
                let held = try core.query(
                    """
                    SELECT count(*) AS n FROM seat_states s JOIN holds h ON h.hold_id = s.hold_id
                     WHERE s.showtime_id = $1 AND s.state = 'held' AND h.user_id = 'greedy'
                    """,
                    [showtimeID]
                )
                #expect(held.first?["n"] == "10")
                let holds = try core.query(
                    "SELECT count(*) AS n FROM holds WHERE showtime_id = $1 AND user_id = 'greedy'",
                    [showtimeID]
                )
                #expect(holds.first?["n"] == "10")
                let created = try core.query(
                    "SELECT count(*) AS n FROM outbox WHERE event_type = 'hold.created' AND payload->>'showtimeId' = $1",
                    [showtimeID]
                )
                #expect(created.first?["n"] == "10")
                // The limit is per user: another user still holds.
                let other = try await core.hold(showtimeID, ["s51", "s52"], user: "someone-else")
                #expect(other.errorCode == nil)
            }
        }

        @Test(
            "best-available holds count against the limit too: 20 concurrent holds of quantity 1 by one user, limit 10: exactly 10 succeed, the rest SEAT_LIMIT_REACHED; a quantity that would pass it is refused whole"
        )
        func bestAvailableHolds() async throws {
            try await withCore(workers: 8, processes: 1, maxSeatsPerUser: 10) { core in
                let showtimeID = try await core.showtime(seats: 40)
                let answers = try await withThrowingTaskGroup(of: RPCAnswer.self) { group in
                    for _ in 1...20 {
                        group.addTask { try await VenueTests.bestAvailable(core, showtimeID, 1, user: "greedy-best") }
                    }
                    var answers: [RPCAnswer] = []
                    for try await answer in group { answers.append(answer) }
                    return answers
                }
                let won = answers.filter { $0.errorCode == nil }
                let refused = answers.filter { $0.errorCode == .seatLimitReached }
                #expect(won.count == 10, "\(answers.map { $0.errorCode?.rawValue ?? "ok" })")
                #expect(refused.count == 10)
                #expect(refused.allSatisfy { $0.error?.details?["limit"] == .number(10) })
                let held = try core.query(
                    """
                    SELECT count(*) AS n FROM seat_states s JOIN holds h ON h.hold_id = s.hold_id
                     WHERE s.showtime_id = $1 AND s.state = 'held' AND h.user_id = 'greedy-best'
                    """,
                    [showtimeID]
                )
                #expect(held.first?["n"] == "10")
                // Another user: 8 seats, then 3 more would be 11: refused whole, nothing held.
                #expect(try await VenueTests.bestAvailable(core, showtimeID, 8, user: "other-best").errorCode == nil)
                let over = try await VenueTests.bestAvailable(core, showtimeID, 3, user: "other-best")
                #expect(over.errorCode == .seatLimitReached, "\(over)")
                #expect(over.error?.details?["held"] == .number(8))
            }
        }

        @Test(
            "a hold that would pass the limit is refused whole; released and expired holds free the budget; purchased seats count only with SEAT_LIMIT_COUNTS_PURCHASED"
        )
        func whatCounts() async throws {
            for countsPurchased in [false, true] {
                try await withCore(
                    holdTTL: 2,
                    workers: 2,
                    maxSeatsPerUser: 4,
                    seatLimitCountsPurchased: countsPurchased
                ) {
                    core in
                    let showtimeID = try await core.showtime(seats: 20)
                    // More seats than the limit at once: refused with held 0, nothing written.
                    let tooMany = try await core.hold(showtimeID, ["s1", "s2", "s3", "s4", "s5"], user: "u")
                    #expect(tooMany.errorCode == .seatLimitReached)
                    #expect(tooMany.error?.details?["held"] == .number(0))
                    #expect(tooMany.error?.details?["limit"] == .number(4))

                    let first = try await core.hold(showtimeID, ["s1", "s2", "s3"], user: "u").decode(Hold.self)
                        .result.get()
                    let passing = try await core.hold(showtimeID, ["s4", "s5"], user: "u")
                    #expect(passing.errorCode == .seatLimitReached)
                    #expect(passing.error?.details?["held"] == .number(3))
                    // All or nothing: s4 was not taken by the refused hold.
                    #expect(try await core.hold(showtimeID, ["s4"], user: "v").errorCode == nil)

                    // Released: the budget is back.
                    let released = try await core.client.call(
                        .release,
                        ReleaseRequest(holdId: first.holdId, userId: "u")
                    )
                    #expect(released.errorCode == nil)
                    let bought = try await core.hold(showtimeID, ["s6", "s7", "s8"], user: "u").decode(Hold.self)
                        .result.get()
                    let purchase = try await core.client.call(
                        .purchase,
                        PurchaseRequest(holdId: bought.holdId, orderId: "o-1", userId: "u")
                    )
                    #expect(purchase.errorCode == nil)
                    // Three purchased seats: counted only when the venue says so.
                    let afterPurchase = try await core.hold(showtimeID, ["s9", "s10"], user: "u")
                    if countsPurchased {
                        #expect(afterPurchase.errorCode == .seatLimitReached)
                        #expect(afterPurchase.error?.details?["held"] == .number(3))
                    } else {
                        #expect(afterPurchase.errorCode == nil)
                    }

                    // Expired (a 2 s TTL): from expiresAt on, the seats no longer count, sweep or not. Polled, as
                    // nothing announces the instant to this process.
                    let short = try await core.hold(showtimeID, ["s11"], user: "w").decode(Hold.self).result.get()
                    let blocked = try await core.hold(showtimeID, ["s12", "s13", "s14", "s15"], user: "w")
                    #expect(blocked.errorCode == .seatLimitReached)
                    let deadline = ContinuousClock.now + .seconds(10)
                    var later = blocked
                    while later.errorCode == .seatLimitReached, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(200))
                        later = try await core.hold(showtimeID, ["s12", "s13", "s14", "s15"], user: "w")
                    }
                    #expect(later.errorCode == nil, "after \(short.expiresAt) the expired hold no longer counts")
                }
            }
        }

        @Test(
            "a caller's idempotency key keeps a SEAT_LIMIT_REACHED refusal: after the user released a hold the same key replays it, a new key is held"
        )
        func refusalKept() async throws {
            try await withCore(workers: 2, processes: 1, maxSeatsPerUser: 2) { core in
                let showtimeID = try await core.showtime(seats: 5)
                let first = try await core.hold(showtimeID, ["s1", "s2"], user: "kim").decode(Hold.self).result.get()
                let refused = try await core.hold(showtimeID, ["s3"], user: "kim", key: "kim-1")
                #expect(refused.errorCode == .seatLimitReached)
                #expect(!refused.isReplayed)

                let released = try await core.client.call(.release, ReleaseRequest(holdId: first.holdId, userId: "kim"))
                #expect(released.errorCode == nil)

                let again = try await core.hold(showtimeID, ["s3"], user: "kim", key: "kim-1")
                #expect(again.errorCode == .seatLimitReached)
                #expect(again.isReplayed)
                #expect(again.body == refused.body)
                let fresh = try await core.hold(showtimeID, ["s3"], user: "kim", key: "kim-2")
                #expect(fresh.errorCode == nil && !fresh.isReplayed)
            }
        }
    }
}
