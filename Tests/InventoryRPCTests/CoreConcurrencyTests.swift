import Contracts
import Foundation
import Testing

@testable import InventoryRPC

/// Storms of concurrent holds over AMQP: whatever Redis does, no seat is ever in two live holds.
@Suite("Core concurrency", .serialized)
struct CoreConcurrencyTests {
    @Test("200 concurrent holds on one seat: exactly one wins, 199 get SEAT_UNAVAILABLE")
    func oneSeat() async throws {
        try await withCore(workers: 8) { core in
            let showtimeID = try await core.showtime(seats: 5)
            let answers = try await withThrowingTaskGroup(of: RPCAnswer.self) { group in
                for index in 0..<200 {
                    group.addTask { try await core.hold(showtimeID, ["s3"], user: "user-\(index)") }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let winners = answers.filter { $0.errorCode == nil }
            let losers = answers.filter { $0.errorCode == .seatUnavailable }
            #expect(winners.count == 1)
            #expect(losers.count == 199)
            #expect(losers.allSatisfy { $0.error?.details?["seatIds"] == .array(["s3"]) })
            let rows = try core.query("SELECT count(*) AS n FROM holds WHERE showtime_id = $1", [showtimeID])
            #expect(rows.first?["n"] == "1")
        }
    }

    @Test("1,000 concurrent holds of 1-4 random seats over 50 seats: no seat in two live holds, every answer agrees with the database")
    func storm() async throws {
        try await withCore(workers: 8) { core in
            let showtimeID = try await core.showtime(seats: 50)
            let results = try await holdStorm(core, showtimeID: showtimeID, count: 1000, seatCount: 50)
            let created = try await checkStorm(results, core: core, showtimeID: showtimeID)
            #expect(created > 0)
        }
    }

    @Test("the same storm with Redis flushed (FLUSHALL) while it runs")
    func stormWithFlush() async throws {
        try await withCore(workers: 8, redis: .private) { core in
            let redis = try #require(core.redis)
            let showtimeID = try await core.showtime(seats: 50)
            let results = try await holdStorm(core, showtimeID: showtimeID, count: 1000, seatCount: 50) {
                for _ in 0..<5 {
                    try await Task.sleep(for: .milliseconds(40))
                    _ = try redis.command(["FLUSHALL"])
                }
            }
            try await checkStorm(results, core: core, showtimeID: showtimeID)
        }
    }

    @Test("the same storm with Redis stopped: the database alone decides")
    func stormWithoutRedis() async throws {
        try await withCore(workers: 8, redis: .private) { core in
            let redis = try #require(core.redis)
            let showtimeID = try await core.showtime(seats: 50)
            redis.stop()
            let started = ContinuousClock.now
            let results = try await holdStorm(core, showtimeID: showtimeID, count: 1000, seatCount: 50)
            let elapsed = ContinuousClock.now - started
            try await checkStorm(results, core: core, showtimeID: showtimeID)
            // The circuit keeps a dead Redis from costing a timeout per request.
            #expect(elapsed < .seconds(60))

            // Redis back: holds keep working and use it again.
            try redis.start()
            let other = try await core.showtime(seats: 4)
            try await Task.sleep(for: .seconds(6))
            let hold = try await core.hold(other, ["s1"]).decode(Hold.self).result.get()
            #expect(try await core.hold(other, ["s1"]).errorCode == .seatUnavailable)
            let lock = try redis.command(["GET", "lock:{\(other)}:s1"])
            #expect(lock == .string(hold.holdId))
        }
    }
}
