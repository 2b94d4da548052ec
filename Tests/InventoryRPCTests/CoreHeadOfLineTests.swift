import AMQPClient
import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// A measurement, not a timing assertion: how many requests wait behind one that is stuck in the database.
    /// It asserts only that every request is answered correctly, and prints the latencies (decision 0013 has
    /// the numbers, for this build and for main's with `INVENTORY_RPC_BIN`).
    @Suite("Core head-of-line")
    struct CoreHeadOfLineTests {
        @Test(
            "one hold stuck on a row lock psql holds for 5 s while 200 other holds go through: each is answered"
        )
        func stuckRequest() async throws {
            // PREFETCH as the process defaults it (nil: not set), 4 workers.
            try await withCore(workers: 4, processes: 1, prefetch: nil) { core in
                let showtimeID = try await core.showtime(seats: 201)
                // psql holds the row for 5 s, then rolls back.
                let psql = try ChildProcess(
                    "/usr/bin/psql",
                    [
                        core.databaseURL, "-q", "-o", "/dev/null", "-c",
                        "BEGIN; SELECT 1 FROM seat_states WHERE showtime_id = '\(showtimeID)' AND seat_id = 's1' FOR UPDATE; "
                            + "SELECT pg_sleep(5); ROLLBACK;",
                    ]
                )
                defer { psql.wait() }
                let monitor = try PostgresConnection(url: core.databaseURL, logger: testLogger)
                defer { monitor.close() }
                func count(_ condition: String) throws -> Bool {
                    try monitor.query(
                        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND \(condition)"
                    ).rows.first?["n"] != "0"
                }
                var sleeping = false
                for _ in 0..<250 where !sleeping {
                    sleeping = try count("query LIKE '%pg_sleep%' AND wait_event = 'PgSleep'")
                    if !sleeping { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(sleeping, "psql never took the row")
                let stuck = Task {
                    try await core.client.call(
                        .hold,
                        HoldRequest(showtimeId: showtimeID, seatIds: ["s1"], userId: "stuck"),
                        headers: [ContractHeaders.deadline: .int(epochMilliseconds() + 20_000)]
                    )
                }
                var waiting = false
                for _ in 0..<200 where !waiting {
                    waiting = try count("wait_event_type = 'Lock'")
                    if !waiting { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(waiting, "the stuck hold never waited on the lock")

                let latencies = try await withThrowingTaskGroup(of: (Duration, RPCAnswer).self) { group in
                    for seat in 2...201 {
                        group.addTask {
                            let started = ContinuousClock.now
                            let answer = try await core.client.call(
                                .hold,
                                HoldRequest(showtimeId: showtimeID, seatIds: ["s\(seat)"], userId: "u\(seat)"),
                                headers: [ContractHeaders.deadline: .int(epochMilliseconds() + 20_000)]
                            )
                            return (ContinuousClock.now - started, answer)
                        }
                    }
                    var results: [(Duration, RPCAnswer)] = []
                    for try await result in group { results.append(result) }
                    return results
                }
                let stuckAnswer = try await stuck.value
                #expect(stuckAnswer.errorCode == nil)

                #expect(latencies.count == 200)
                #expect(latencies.allSatisfy { $0.1.errorCode == nil })
                let sorted = latencies.map { Self.milliseconds($0.0) }.sorted()
                let behind = sorted.filter { $0 >= 1_000 }.count
                print(
                    "head-of-line: 200 holds while one waits 5 s on a row lock: p50 \(sorted[99]) ms, "
                        + "p90 \(sorted[179]) ms, p99 \(sorted[197]) ms, max \(sorted[199]) ms; "
                        + "\(behind) took 1 s or more (binary: \((try? Products.path("inventory-rpc")) ?? "?"))"
                )
            }
        }

        static func milliseconds(_ duration: Duration) -> Int {
            Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
        }
    }
}
