import AMQPClient
import Contracts
import Foundation
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// Idempotency and expiry over AMQP.
    @Suite("Core idempotency and expiry")
    struct CoreHoldLifecycleTests {
        @Test(
            "50 concurrent holds with one key create one hold and every answer is that hold (duplicates wait for the first in the database); then it replays, and other seats are IDEMPOTENCY_KEY_REUSED"
        )
        func concurrentIdempotency() async throws {
            try await withCore(workers: 8) { core in
                let showtimeID = try await core.showtime(seats: 10)
                let key = "key-\(uniqueID())"
                let answers = try await withThrowingTaskGroup(of: RPCAnswer.self) { group in
                    for index in 0..<50 {
                        // Half give the key in the body, half in the header.
                        group.addTask {
                            index.isMultiple(of: 2)
                                ? try await core.hold(showtimeID, ["s1", "s2"], user: "carol", key: key)
                                : try await core.hold(
                                    showtimeID,
                                    ["s1", "s2"],
                                    user: "carol",
                                    headers: ["idempotency-key": .string(key)]
                                )
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                var holdIDs: Set<String> = []
                for answer in answers {
                    switch try answer.decode(Hold.self) {
                    case .ok(let hold): holdIDs.insert(hold.holdId)
                    case .error(let error): Issue.record("answered \(error.code.rawValue), not the hold")
                    }
                }
                #expect(holdIDs.count == 1)
                let rows = try core.query("SELECT hold_id FROM holds WHERE showtime_id = $1", [showtimeID])
                #expect(rows.count == 1 && rows.first?["hold_id"] == holdIDs.first)

                let replay = try await core.hold(showtimeID, ["s1", "s2"], user: "carol", key: key)
                #expect(replay.isReplayed)
                #expect(try replay.decode(Hold.self).result.get().holdId == holdIDs.first)

                let reused = try await core.hold(showtimeID, ["s3"], user: "carol", key: key)
                #expect(reused.errorCode == .idempotencyKeyReused)
                // Keys are per user: another user's same key is a new hold (of other seats).
                let otherUser = try await core.hold(showtimeID, ["s3"], user: "dave", key: key)
                #expect(otherUser.errorCode == nil && !otherUser.isReplayed)

                let complete = await core.events.wait { $0.filter { $0.showtimeId == showtimeID }.count >= 2 }
                #expect(complete)
                #expect(core.events.unique.filter { $0.showtimeId == showtimeID }.count == 2)
                try await checkEventsMatchOutbox(core)
            }
        }

        @Test(
            "HOLD_TTL_SECONDS=2: the seat is holdable right after 2 s, before any sweep; the sweep publishes one hold.expired; purchase after expiry is HOLD_EXPIRED"
        )
        func expiry() async throws {
            // Sweeps run at start and every 8 s: the hold (made right after start) expires at most 3 s later
            // (expiresAt is rounded up to the second), well before the second sweep.
            try await withCore(holdTTL: 2, expiryInterval: 8) { core in
                let showtimeID = try await core.showtime(seats: 3)
                let first = try await core.hold(showtimeID, ["s1", "s2"], user: "erin").decode(Hold.self).result.get()
                #expect(try await core.hold(showtimeID, ["s1"], user: "frank").errorCode == .seatUnavailable)

                // Wait until the database clock passed expiresAt, then hold at once (before the sweep got to it).
                while true {
                    let passed = try core.query("SELECT now() >= $1::timestamptz AS passed", [first.expiresAt])
                    if passed.first?["passed"] == "t" { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                let status = try core.query("SELECT status FROM holds WHERE hold_id = $1", [first.holdId])
                #expect(status.first?["status"] == "active", "not swept yet")
                let second = try await core.hold(showtimeID, ["s1"], user: "frank")
                #expect(second.errorCode == nil, "the seat is free at expiresAt, swept or not")
                let availability = try await core.client.call(
                    .availability,
                    AvailabilityRequest(showtimeId: showtimeID)
                )
                .decode(Availability.self).result.get()
                #expect(availability.availability.first { $0.seatId == "s2" }?.state == .available)
                let got = try await core.client.call(.holdGet, HoldGetRequest(holdId: first.holdId)).decode(Hold.self)
                    .result.get()
                #expect(got.status == .expired)

                let purchase = try await core.client.call(
                    .purchase,
                    PurchaseRequest(holdId: first.holdId, orderId: "o-late")
                )
                #expect(purchase.errorCode == .holdExpired)

                // The sweep marks it expired and publishes hold.expired exactly once.
                let expired = await core.events.wait(timeout: .seconds(10)) { events in
                    events.contains { $0.type == .holdExpired && $0.holdId == first.holdId }
                }
                #expect(expired)
                try await Task.sleep(for: .seconds(1))
                #expect(core.events.unique.filter { $0.type == .holdExpired && $0.holdId == first.holdId }.count == 1)
                let order = core.events.unique.filter { $0.holdId == first.holdId }.map(\.type)
                #expect(order == [.holdCreated, .holdExpired])
                let final = try core.query("SELECT status FROM holds WHERE hold_id = $1", [first.holdId])
                #expect(final.first?["status"] == "expired")
                try await checkEventsMatchOutbox(core)
            }
        }
        @Test("events leave within milliseconds: the relay wakes on NOTIFY, not at its next poll")
        func eventsLeaveAtOnce() async throws {
            try await withCore(outboxPollInterval: .seconds(60)) { core in
                let showtimeID = try await core.showtime(seats: 10)
                // The relay is the leader and idle (waiting for a NOTIFY, next poll in a minute).
                try await Task.sleep(for: .milliseconds(500))
                for seat in 1...5 {
                    let hold = try await core.hold(showtimeID, ["s\(seat)"]).decode(Hold.self).result.get()
                    let started = ContinuousClock.now
                    let arrived = await core.events.wait(timeout: .seconds(30)) { events in
                        events.contains { $0.holdId == hold.holdId }
                    }
                    #expect(arrived)
                    print("hold.created arrived \(ContinuousClock.now - started) after the reply")
                    #expect(
                        ContinuousClock.now - started < .seconds(30),
                        "hold.created on the NOTIFY, not at the poll a minute away"
                    )
                }
                // An idle core (relay waiting for NOTIFY with a minute to its next poll) stops at once.
                let stopping = ContinuousClock.now
                core.core?.stop()
                #expect(ContinuousClock.now - stopping < .seconds(30), "at once, not at the poll a minute away")
            }
        }
    }
}
