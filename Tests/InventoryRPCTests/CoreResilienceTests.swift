import AMQPClient
import Contracts
import Foundation
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// Connections lost under load: the core reconnects, answers, and loses or invents no event.
    @Suite("Core resilience")
    struct CoreResilienceTests {
        @Test(
            "the core's broker connections closed under load: every request is answered (redeliveries replay by key), every committed event is published once per eventId, in per-hold order"
        )
        func brokerConnectionsLost() async throws {
            try await withCore(workers: 4) { core in
                let showtimeID = try await core.showtime(seats: 300)
                let run = uniqueID()
                // The connections to close, listed first (rabbitmqctl is slow), then closed while holds stream in
                // (300 holds spread over about 3 s).
                var connections: [String] = []
                for _ in 0..<50 {
                    connections = try coreBrokerConnections(vhost: core.vhost)
                    if connections.count >= 5 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(connections.count >= 5, "4 workers and the relay")
                let targets = connections
                let answers = try await withThrowingTaskGroup(of: RPCAnswer?.self) { group in
                    for seat in 1...300 {
                        group.addTask {
                            try await Task.sleep(for: .milliseconds(10 * seat))
                            return try await core.hold(
                                showtimeID,
                                ["s\(seat)"],
                                user: "user-\(run)-\(seat)",
                                key: "key-\(seat)"
                            )
                        }
                    }
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(800))
                        try closeBrokerConnections(targets)
                        return nil
                    }
                    var answers: [RPCAnswer] = []
                    for try await answer in group { if let answer { answers.append(answer) } }
                    return answers
                }
                #expect(answers.count == 300)
                // A redelivery can overtake its first delivery, still deciding on a worker whose connection
                // closed: it waits for that one in the database (on the key's row) and replays its hold.
                let codes = answers.compactMap(\.errorCode)
                #expect(codes.isEmpty, "\(codes)")
                for answer in answers where answer.errorCode == .idempotencyKeyInUse {
                    let key = try #require(answer.error?.details?["idempotencyKey"])
                    guard case .string(let text) = key, let seat = Int(text.dropFirst("key-".count)) else { continue }
                    let retry = try await core.hold(showtimeID, ["s\(seat)"], user: "user-\(run)-\(seat)", key: text)
                    #expect(retry.errorCode == nil && retry.isReplayed)
                }
                let rows = try core.query("SELECT count(*) AS n FROM holds WHERE showtime_id = $1", [showtimeID])
                #expect(rows.first?["n"] == "300")
                // Release a few so holds have more than one event.
                for answer in answers.filter({ $0.errorCode == nil }).prefix(20) {
                    let hold = try answer.decode(Hold.self).result.get()
                    _ = try await core.client.call(.release, ReleaseRequest(holdId: hold.holdId))
                }
                try await checkEventsMatchOutbox(core)
            }
        }

        @Test(
            "the core's database connections terminated: at worst SERVICE_UNAVAILABLE, then holds work again and the relay publishes"
        )
        func databaseConnectionsLost() async throws {
            try await withCore(workers: 4) { core in
                let showtimeID = try await core.showtime(seats: 100)
                let user = "user-\(uniqueID())"
                #expect(try await core.hold(showtimeID, ["s1"]).errorCode == nil)
                let terminated = try core.query(
                    "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                #expect(Int(terminated.first?["n"] ?? "0") ?? 0 >= 6, "4 workers, the relay and the timer")

                var codes: [String] = []
                var seat = 2
                let deadline = ContinuousClock.now + .seconds(15)
                while ContinuousClock.now < deadline {
                    let answer = try await core.hold(showtimeID, ["s\(seat)"], user: user, key: "k\(seat)")
                    codes.append(answer.errorCode?.rawValue ?? "ok")
                    if answer.errorCode == nil { break }
                    seat += 1
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(codes.last == "ok")
                #expect(codes.allSatisfy { ["ok", "SERVICE_UNAVAILABLE"].contains($0) }, "\(codes)")
                for next in (seat + 1)...(seat + 20) {
                    // A buyer per seat: one user's 20 seats would meet MAX_SEATS_PER_USER (10), not what this is about.
                    let answer = try await core.hold(showtimeID, ["s\(next)"], user: "\(user)-\(next)", key: "k\(next)")
                    #expect(answer.errorCode == nil || answer.errorCode == .serviceUnavailable)
                }
                try await checkEventsMatchOutbox(core)
            }
        }
    }
}
