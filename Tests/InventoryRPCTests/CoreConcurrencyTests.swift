import AMQPClient
import Contracts
import Foundation
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// Storms of concurrent holds over AMQP: whatever Redis does, no seat is ever in two live holds.
    @Suite("Core concurrency")
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

        @Test(
            "1,000 concurrent holds of 1-4 random seats over 50 seats: no seat in two live holds, every answer agrees with the database"
        )
        func storm() async throws {
            try await withCore(workers: 8) { core in
                let showtimeID = try await core.showtime(seats: 50)
                let results = try await holdStorm(core, showtimeID: showtimeID, count: 1000, seatCount: 50)
                let created = try await checkStorm(results, core: core, showtimeID: showtimeID)
                #expect(created > 0)
                try await checkEventsMatchOutbox(core)
            }
        }

        @Test("the same storm with Redis flushed (FLUSHALL) while it runs")
        func stormWithFlush() async throws {
            try await withCore(workers: 8, redis: .private) { core in
                let redis = try #require(core.redis)
                let showtimeID = try await core.showtime(seats: 50)
                let results = try await holdStorm(core, showtimeID: showtimeID, count: 1000, seatCount: 50) {
                    // Flushed every 100 ms for the first 2 s: while seats are first taken and after.
                    for _ in 0..<20 {
                        try await Task.sleep(for: .milliseconds(100))
                        _ = try redis.command(["FLUSHALL"])
                    }
                }
                try await checkStorm(results, core: core, showtimeID: showtimeID)
                try await checkEventsMatchOutbox(core)
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

                // Redis back: holds keep working, and use it again once the circuit's back-off let a probe through.
                try redis.start()
                let other = try await core.showtime(seats: 60)
                var locked = false
                for seat in 1...60 {
                    let hold = try await core.hold(other, ["s\(seat)"]).decode(Hold.self).result.get()
                    if try redis.command(["GET", "lock:{\(other)}:s\(seat)"]) == .string(hold.holdId) {
                        locked = true
                        #expect(try await core.hold(other, ["s\(seat)"]).errorCode == .seatUnavailable)
                        break
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(locked, "seat locks are taken in Redis again after it came back")
            }
        }

        @Test("the same storm with Redis frozen (SIGSTOP): the circuit keeps holds fast and correct")
        func stormWithFrozenRedis() async throws {
            try await withCore(workers: 8, redis: .private) { core in
                let redis = try #require(core.redis)
                let showtimeID = try await core.showtime(seats: 50)
                redis.pause()
                defer { redis.resume() }
                let started = ContinuousClock.now
                let results = try await holdStorm(core, showtimeID: showtimeID, count: 1000, seatCount: 50)
                let elapsed = ContinuousClock.now - started
                try await checkStorm(results, core: core, showtimeID: showtimeID)
                // Without the circuit, each of the 1,000 holds would wait out the 200 ms command timeout
                // (8 workers: at least 25 s).
                #expect(elapsed < .seconds(20), "storm took \(elapsed)")
            }
        }

        @Test(
            "two `inventory-rpc serve` processes consuming together: same storm, same result; both stop cleanly on SIGTERM"
        )
        func twoProcesses() async throws {
            try await withCore(workers: 4, processes: 2) { core in
                let showtimeID = try await core.showtime(seats: 50)
                // Both processes consume every queue (4 workers each).
                let broker = try AMQPConnection(
                    configuration: try AMQPConfiguration(url: core.rabbitmqURL),
                    logger: testLogger
                )
                defer { broker.close() }
                var consumers = 0
                for _ in 0..<100 {
                    consumers = try broker.inspectQueue(RPCOperation.hold.queueName).consumerCount
                    if consumers == 8 { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(consumers == 8)

                let results = try await holdStorm(core, showtimeID: showtimeID, count: 1000, seatCount: 50)
                try await checkStorm(results, core: core, showtimeID: showtimeID)
                try await checkEventsMatchOutbox(core)
                // One relay across both processes: no failure, so not a single duplicate.
                #expect(core.events.all.count == core.events.unique.count)
                let leaders = core.processes.filter { $0.output.contains("outbox relay is the leader") }
                #expect(leaders.count == 1)

                for process in core.processes {
                    let output = process.output
                    #expect(output.contains("✅ Inventory Service - DATABASE_URL loaded"))
                    #expect(output.contains("✅ Inventory Service - RabbitMQ connected"))
                    #expect(output.contains("Hold TTL: 300 seconds (5 minutes)"))
                }
                let started = ContinuousClock.now
                for process in core.processes {
                    #expect(process.terminate() == 0, "exit 0 on SIGTERM:\n\(process.output)")
                }
                #expect(ContinuousClock.now - started < .seconds(10))
            }
        }

        @Test(
            "SIGTERM to one of two serve processes in the middle of a storm: it finishes what it took and exits 0; the other answers the rest; same result"
        )
        func gracefulShutdownUnderLoad() async throws {
            try await withCore(workers: 4, processes: 2) { core in
                let showtimeID = try await core.showtime(seats: 50)
                let leaving = core.processes[0]
                let exit = Locked<Int32?>(nil)
                let results = try await withThrowingTaskGroup(of: [StormResult].self) { group in
                    group.addTask {
                        // 1,000 holds over about 2 s.
                        try await withThrowingTaskGroup(of: StormResult.self) { inner in
                            for index in 0..<1000 {
                                let seats = Array((1...50).shuffled().prefix(Int.random(in: 1...4))).map { "s\($0)" }
                                inner.addTask {
                                    try await Task.sleep(for: .milliseconds(2 * index))
                                    return StormResult(
                                        seats: seats,
                                        // A buyer per request, as in holdStorm (MAX_SEATS_PER_USER).
                                        answer: try await core.hold(showtimeID, seats, user: "u\(index)")
                                    )
                                }
                            }
                            return try await inner.reduce(into: []) { $0.append($1) }
                        }
                    }
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(700))
                        let started = ContinuousClock.now
                        let status = leaving.terminate()
                        exit.withLock { $0 = status }
                        #expect(ContinuousClock.now - started < .seconds(10))
                        return []
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                #expect(exit.withLock { $0 } == 0, "exit 0 on SIGTERM:\n\(leaving.output)")
                #expect(results.count == 1000)
                try await checkStorm(results, core: core, showtimeID: showtimeID)
                try await checkEventsMatchOutbox(core)
            }
        }
        @Test(
            "SIGKILL to the process that leads the outbox relay: the other takes over, answers, and every event is published"
        )
        func relayLeaderKilled() async throws {
            try await withCore(workers: 2, processes: 2) { core in
                let showtimeID = try await core.showtime(seats: 100)
                // A buyer per seat throughout: one user's 60 seats would meet MAX_SEATS_PER_USER (10).
                for seat in 1...10 {
                    #expect(try await core.hold(showtimeID, ["s\(seat)"], user: "u\(seat)").errorCode == nil)
                }
                var leader: ServerProcess?
                for _ in 0..<100 {
                    leader = core.processes.first { $0.output.contains("outbox relay is the leader") }
                    if leader != nil { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let killed = try #require(leader)
                killed.child.signal(SIGKILL)
                killed.child.wait()
                // Requests the killed process had taken are redelivered to the survivor: keys make them safe.
                let run = uniqueID()
                let answers = try await withThrowingTaskGroup(of: RPCAnswer.self) { group in
                    for seat in 11...60 {
                        group.addTask {
                            try await core.hold(showtimeID, ["s\(seat)"], user: "u-\(run)-\(seat)", key: "k\(seat)")
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(answers.allSatisfy { $0.errorCode == nil })
                let survivor = try #require(core.processes.first { $0 !== killed })
                try await checkEventsMatchOutbox(core, timeout: .seconds(30))
                #expect(survivor.output.contains("outbox relay is the leader"))
            }
        }
    }
}

extension CoreServiceTests {
    /// Group commit through the core (decision 0022): holds delivered together are decided in one transaction,
    /// each exactly as if alone.
    @Suite("Core group commit")
    struct CoreGroupCommitTests {
        @Test(
            "300 holds sent at once to one worker: decided in shared transactions, each answered as if alone (one winner per seat, invalid ones refused alone)"
        )
        func batchesAnswerAsAlone() async throws {
            try await withCore(workers: 1, prefetch: 16) { core in
                let showtimeID = try await core.showtime(seats: 100)
                // Every seat asked for twice, plus requests the core refuses on their own: an unknown seat and a
                // duplicate seat id (validation) among them.
                let answers = try await withThrowingTaskGroup(of: (Int, RPCAnswer).self) { group in
                    for index in 0..<300 {
                        group.addTask {
                            let seats: [String] =
                                switch index % 3 {
                                case 0, 1: ["s\(index / 3 + 1)"]
                                default: index % 2 == 0 ? ["nope-\(index)"] : ["s1", "s1"]
                                }
                            return (index, try await core.hold(showtimeID, seats, user: "user-\(index)"))
                        }
                    }
                    return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
                }
                #expect(answers.count == 300)
                for seat in 1...100 {
                    let pair = [answers[(seat - 1) * 3]!, answers[(seat - 1) * 3 + 1]!]
                    #expect(pair.filter { $0.errorCode == nil }.count == 1, "one winner for s\(seat)")
                    #expect(pair.filter { $0.errorCode == .seatUnavailable }.count == 1, "one loser for s\(seat)")
                }
                for index in stride(from: 2, to: 300, by: 3) {
                    let expected: ErrorCode = index % 2 == 0 ? .unknownSeats : .validationFailed
                    #expect(answers[index]?.errorCode == expected, "request \(index)")
                }
                let rows = try core.query(
                    """
                    SELECT count(*) AS holds, count(DISTINCT created_at) AS transactions,
                           (SELECT count(*) FROM seat_states WHERE showtime_id = $1 AND state = 'held') AS held
                      FROM holds WHERE showtime_id = $1
                    """,
                    [showtimeID]
                )
                #expect(rows.first?["holds"] == "100")
                #expect(rows.first?["held"] == "100")
                // A hold's created_at is its transaction's start: fewer distinct values than holds means holds
                // shared transactions.
                let transactions = Int(rows.first?["transactions"] ?? "") ?? 100
                print("group commit: 100 holds created in \(transactions) transactions")
                #expect(transactions < 100, "no two holds shared a transaction")
                try await checkEventsMatchOutbox(core)
            }
        }
    }
}
