import AMQPClient
import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// INTERFACE.md rule 9 over AMQP, against `inventory-rpc serve` processes (so each test can also be run
    /// against another build of the core with `INVENTORY_RPC_BIN=...`: decision 0013 says which fail on main).
    @Suite("Core idempotency records and deadlines")
    struct CoreIdempotencyTests {
        @Test(
            "a keyed hold refused SEAT_UNAVAILABLE keeps that answer: once the seats are free the same key replays the refusal; another request with the key is IDEMPOTENCY_KEY_REUSED"
        )
        func refusalReplayed() async throws {
            try await withCore(workers: 2, processes: 1) { core in
                let showtimeID = try await core.showtime(seats: 5)
                let alices = try await core.hold(showtimeID, ["s1"], user: "alice").decode(Hold.self).result.get()

                let refused = try await core.hold(showtimeID, ["s1", "s2"], user: "bob", key: "bob-1")
                #expect(refused.errorCode == .seatUnavailable)
                #expect(!refused.isReplayed)

                let released = try await core.client.call(
                    .release,
                    ReleaseRequest(holdId: alices.holdId, userId: "alice")
                )
                #expect(released.errorCode == nil)

                // The seats are free now, yet the key's first answer stands.
                let again = try await core.hold(showtimeID, ["s1", "s2"], user: "bob", key: "bob-1")
                #expect(again.errorCode == .seatUnavailable)
                #expect(again.isReplayed)
                #expect(again.error?.details?["seatIds"] == .array(["s1"]))
                #expect(again.body == refused.body)

                let other = try await core.hold(showtimeID, ["s3"], user: "bob", key: "bob-1")
                #expect(other.errorCode == .idempotencyKeyReused)
                #expect(!other.isReplayed)

                let bobs = try core.query("SELECT count(*) AS n FROM holds WHERE user_id = 'bob'")
                #expect(bobs.first?["n"] == "0")
                // A new key is a new request: the seats are free, so it is held.
                let fresh = try await core.hold(showtimeID, ["s1", "s2"], user: "bob", key: "bob-2")
                #expect(fresh.errorCode == nil && !fresh.isReplayed)
            }
        }

        @Test(
            "a hold without a key published twice with one message_id (a redelivery) replays its success, and a refusal under a derived key is not stored"
        )
        func derivedKeyReplays() async throws {
            try await withCore(workers: 2, processes: 1) { core in
                let showtimeID = try await core.showtime(seats: 5)
                let body = try ContractJSON.encode(
                    HoldRequest(showtimeId: showtimeID, seatIds: ["s1"], userId: "carol")
                )
                // The test client's message_id is the call's correlation id: the same one twice (one after the
                // other) is one message delivered twice.
                let messageID = "msg-\(uniqueID())"
                let first = try await core.client.call(.hold, body: body, correlationID: messageID)
                let hold = try first.decode(Hold.self).result.get()
                #expect(!first.isReplayed)

                let redelivered = try await core.client.call(.hold, body: body, correlationID: messageID)
                #expect(redelivered.errorCode == nil, "\(String(decoding: redelivered.body, as: UTF8.self))")
                #expect(try redelivered.decode(Hold.self).result.get().holdId == hold.holdId)
                #expect(redelivered.isReplayed)

                // Another message is another request: refused, and nothing is written for it.
                let other = try await core.client.call(.hold, body: body, correlationID: "msg-\(uniqueID())")
                #expect(other.errorCode == .seatUnavailable)
                let records = try core.query("SELECT derived, hold_id FROM idempotency_keys WHERE user_id = 'carol'")
                #expect(records.count == 1)
                #expect(records.first?["derived"] == "t" && records.first?["hold_id"] == hold.holdId)
            }
        }

        @Test(
            "a hold without a key that commits after its worker's broker connection closed is redelivered and replays its own hold, never SEAT_UNAVAILABLE"
        )
        func unkeyedRedeliveryReplays() async throws {
            try await withCore(workers: 2, processes: 1) { core in
                let showtimeID = try await core.showtime(seats: 5)
                var connections: [String] = []
                for _ in 0..<50 {
                    connections = try coreBrokerConnections(vhost: core.vhost)
                    if connections.count >= 3 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(connections.count >= 3, "2 workers and the relay")
                // The seat's row is locked, so the hold waits in its transaction...
                let blocker = try PostgresConnection(url: core.databaseURL, logger: testLogger)
                defer { blocker.close() }
                try blocker.query("BEGIN")
                try blocker.query(
                    "SELECT 1 FROM seat_states WHERE showtime_id = $1 AND seat_id = 's1' FOR UPDATE",
                    [showtimeID]
                )
                let request = HoldRequest(showtimeId: showtimeID, seatIds: ["s1"], userId: "ivan")
                let answer = Task {
                    try await core.client.call(
                        .hold,
                        body: try ContractJSON.encode(request),
                        timeout: .seconds(20)
                    )
                }
                var waiting = false
                for _ in 0..<200 where !waiting {
                    waiting =
                        try blocker.query(
                            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        ).rows.first?["n"] != "0"
                    if !waiting { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(waiting, "the hold never waited on the row")
                // ...while the broker connections go: the delivery is requeued and redelivered to a reconnected
                // worker, which waits on the same row.
                try closeBrokerConnections(connections)
                var redelivered = false
                for _ in 0..<250 where !redelivered {
                    redelivered =
                        try blocker.query(
                            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        ).rows.first?["n"] == "2"
                    if !redelivered { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(redelivered, "the redelivery never reached the row")
                // The first delivery commits (its reply cannot be sent); the redelivery answers.
                try blocker.query("ROLLBACK")
                let reply = try await answer.value
                #expect(reply.errorCode == nil, "\(String(decoding: reply.body, as: UTF8.self))")
                let rows = try core.query("SELECT hold_id FROM holds WHERE showtime_id = $1", [showtimeID])
                #expect(rows.count == 1)
                if reply.errorCode == nil {
                    #expect(try reply.decode(Hold.self).result.get().holdId == rows.first?["hold_id"])
                    #expect(reply.isReplayed)
                }
            }
        }

        @Test(
            "a hold stuck behind a row lock past its deadline rolls back and is not answered; the key decides afresh afterwards"
        )
        func deadlineReachesTheDatabase() async throws {
            try await withCore(workers: 2, processes: 1) { core in
                let showtimeID = try await core.showtime(seats: 5)
                let blocker = try PostgresConnection(url: core.databaseURL, logger: testLogger)
                defer { blocker.close() }
                try blocker.query("BEGIN")
                try blocker.query(
                    "SELECT 1 FROM seat_states WHERE showtime_id = $1 AND seat_id = 's1' FOR UPDATE",
                    [showtimeID]
                )
                let deadline = epochMilliseconds() + 1500
                let request = HoldRequest(
                    showtimeId: showtimeID,
                    seatIds: ["s1"],
                    userId: "dora",
                    idempotencyKey: "dora-1"
                )
                let stuck = Task {
                    try? await core.client.call(
                        .hold,
                        request,
                        headers: [ContractHeaders.deadline: .int(deadline)],
                        timeout: .seconds(5)
                    )
                }
                // The hold reaches the lock (or has already given up on it), then its deadline passes; only then
                // does the blocker let go.
                for _ in 0..<100 {
                    let waiting = try blocker.query(
                        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    if waiting.rows.first?["n"] != "0" || epochMilliseconds() >= deadline { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                while epochMilliseconds() < deadline + 500 { try await Task.sleep(for: .milliseconds(50)) }
                try blocker.query("ROLLBACK")

                let answer = await stuck.value
                #expect(
                    answer == nil,
                    "answered after its deadline: \(answer.map { String(decoding: $0.body, as: UTF8.self) } ?? "")"
                )
                let holds = try core.query("SELECT count(*) AS n FROM holds WHERE showtime_id = $1", [showtimeID])
                #expect(holds.first?["n"] == "0", "a hold committed after its caller's deadline")
                #expect(core.processes[0].output.contains("stopped by the request's deadline"))

                // Nothing was stored for the key: its retry decides now.
                let retry = try await core.client.call(.hold, request)
                #expect(retry.errorCode == nil && !retry.isReplayed)
            }
        }

        @Test(
            "idempotency records older than IDEMPOTENCY_RETENTION_HOURS are purged by the expiry timer; younger ones stay; a purged key is new again"
        )
        func retentionPurge() async throws {
            try await withCore(expiryInterval: 1, workers: 2, processes: 1) { core in
                let showtimeID = try await core.showtime(seats: 5)
                let erins = try await core.hold(showtimeID, ["s1"], user: "erin", key: "erin-1").decode(Hold.self)
                    .result.get()
                #expect(
                    try await core.hold(showtimeID, ["s1"], user: "finn", key: "finn-1").errorCode == .seatUnavailable
                )
                #expect(try await core.hold(showtimeID, ["s2"], user: "gus", key: "gus-1").errorCode == nil)
                // Two days pass for erin's and finn's records (the default retention is 48 hours).
                _ = try core.query(
                    "UPDATE idempotency_keys SET created_at = created_at - interval '49 hours' WHERE user_id IN ('erin', 'finn')"
                )
                var left: [PostgresRow] = []
                for _ in 0..<100 {
                    left = try core.query("SELECT user_id FROM idempotency_keys ORDER BY user_id")
                    if left.count == 1 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(left.map { $0["user_id"] } == ["gus"])

                // erin's key with another request is a new hold, not IDEMPOTENCY_KEY_REUSED.
                let reused = try await core.hold(showtimeID, ["s3"], user: "erin", key: "erin-1")
                #expect(reused.errorCode == nil && !reused.isReplayed)
                // finn's key is decided afresh once the seat is free.
                _ = try await core.client.call(.release, ReleaseRequest(holdId: erins.holdId, userId: "erin"))
                let finn = try await core.hold(showtimeID, ["s1"], user: "finn", key: "finn-1")
                #expect(finn.errorCode == nil && !finn.isReplayed)
                // gus's record is still answered.
                #expect(try await core.hold(showtimeID, ["s2"], user: "gus", key: "gus-1").isReplayed)
            }
        }
    }
}
