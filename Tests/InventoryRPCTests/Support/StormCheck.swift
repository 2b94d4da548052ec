import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// One request of a storm and the answer it got.
struct StormResult: Sendable {
    var seats: [String]
    var answer: RPCAnswer
}

/// Sends `count` holds of 1 to `maxSeats` random seats of `seatCount` seats (`s1`...), all at once.
func holdStorm(
    _ core: CoreHarness,
    showtimeID: String,
    count: Int,
    seatCount: Int,
    maxSeats: Int = 4,
    during: (@Sendable () async throws -> Void)? = nil
) async throws -> [StormResult] {
    try await withThrowingTaskGroup(of: StormResult?.self) { group in
        for index in 0..<count {
            let size = Int.random(in: 1...maxSeats)
            let seats = Array((1...seatCount).shuffled().prefix(size)).map { "s\($0)" }
            group.addTask {
                let answer = try await core.hold(showtimeID, seats, user: "user-\(index % 37)")
                return StormResult(seats: seats, answer: answer)
            }
        }
        if let during {
            group.addTask {
                try await during()
                return nil
            }
        }
        var results: [StormResult] = []
        for try await result in group { if let result { results.append(result) } }
        return results
    }
}

/// Checks a storm's answers against the final database state and the published events:
/// no seat in two live holds; every `ok` answer is a live hold with exactly its seats; every live hold was
/// answered `ok` to someone (no hold nobody was told about); every `SEAT_UNAVAILABLE` names only requested
/// seats that a committed hold holds; no other answer; one `hold.created` per created hold.
/// Returns how many holds were created.
@discardableResult
func checkStorm(
    _ results: [StormResult],
    core: CoreHarness,
    showtimeID: String,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> Int {
    let rows = try core.query(
        "SELECT hold_id, array_to_string(seat_ids, ',') AS seats, status FROM holds WHERE showtime_id = $1",
        [showtimeID]
    )
    var live: [String: Set<String>] = [:]
    for row in rows where row["status"] == "active" {
        live[row["hold_id"]!] = Set(row["seats"]!.split(separator: ",").map(String.init))
    }
    var seatHolder: [String: String] = [:]
    for (holdID, seats) in live {
        for seat in seats {
            #expect(seatHolder[seat] == nil, "seat \(seat) is in two live holds", sourceLocation: sourceLocation)
            seatHolder[seat] = holdID
        }
    }
    let seatRows = try core.query(
        "SELECT seat_id, state, hold_id FROM seat_states WHERE showtime_id = $1 AND state <> 'available'",
        [showtimeID]
    )
    for row in seatRows {
        #expect(row["state"] == "held" && seatHolder[row["seat_id"]!] == row["hold_id"], sourceLocation: sourceLocation)
    }
    #expect(seatRows.count == seatHolder.count, sourceLocation: sourceLocation)

    var answeredHolds: Set<String> = []
    var unavailable = 0
    for result in results {
        switch try result.answer.decode(Hold.self) {
        case .ok(let hold):
            #expect(answeredHolds.insert(hold.holdId).inserted, sourceLocation: sourceLocation)
            #expect(
                live[hold.holdId] == Set(result.seats),
                "an ok answer is a live hold of its seats",
                sourceLocation: sourceLocation
            )
        case .error(let error):
            #expect(error.code == .seatUnavailable, "unexpected answer \(error)", sourceLocation: sourceLocation)
            unavailable += 1
            guard case .array(let named)? = error.details?["seatIds"] else {
                Issue.record("SEAT_UNAVAILABLE without details.seatIds", sourceLocation: sourceLocation)
                continue
            }
            let seats = named.compactMap { value -> String? in
                if case .string(let seat) = value { return seat }
                return nil
            }
            #expect(!seats.isEmpty, sourceLocation: sourceLocation)
            for seat in seats {
                #expect(result.seats.contains(seat), sourceLocation: sourceLocation)
                #expect(
                    seatHolder[seat] != nil,
                    "seat \(seat) named unavailable but free at the end",
                    sourceLocation: sourceLocation
                )
            }
        }
    }
    #expect(
        Set(live.keys) == answeredHolds,
        "every live hold was answered ok, and only those",
        sourceLocation: sourceLocation
    )
    #expect(answeredHolds.count + unavailable == results.count, sourceLocation: sourceLocation)

    let published = await core.events.wait { events in
        Set(events.filter { $0.type == .holdCreated && $0.showtimeId == showtimeID }.map(\.holdId)).isSuperset(
            of: answeredHolds
        )
    }
    #expect(published, "every created hold's event was published", sourceLocation: sourceLocation)
    let created = core.events.unique.filter { $0.type == .holdCreated && $0.showtimeId == showtimeID }
    #expect(created.count == answeredHolds.count, "one hold.created per created hold", sourceLocation: sourceLocation)
    #expect(Set(created.map(\.holdId)) == answeredHolds, sourceLocation: sourceLocation)
    return answeredHolds.count
}

/// Rule 4 of INTERFACE.md, checked against the database: every committed outbox row arrived (at least
/// once), no event arrived that is not a committed row, and per hold the events arrived (first copies) in
/// the order they committed.
func checkEventsMatchOutbox(
    _ core: CoreHarness,
    timeout: Duration = .seconds(20),
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let rows = try core.query("SELECT event_id::text AS event_id, hold_id, event_type FROM outbox ORDER BY id")
    let committed = rows.map { $0["event_id"]! }
    let arrived = await core.events.wait(timeout: timeout) { Set($0.map(\.eventId)).isSuperset(of: committed) }
    #expect(arrived, "every committed event was published", sourceLocation: sourceLocation)
    let received = core.events.unique
    #expect(
        Set(received.map(\.eventId)) == Set(committed),
        "no event that did not commit",
        sourceLocation: sourceLocation
    )
    var expected: [String: [String]] = [:]
    for row in rows { expected[row["hold_id"]!, default: []].append(row["event_id"]!) }
    var actual: [String: [String]] = [:]
    for event in received { actual[event.holdId, default: []].append(event.eventId) }
    #expect(expected == actual, "per-hold order", sourceLocation: sourceLocation)
    let unpublished = try core.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    #expect(unpublished.first?["n"] == "0", "every row marked published", sourceLocation: sourceLocation)
}

/// The broker's ids of the AMQP connections the core opened in `vhost` (named "inventory-rpc ...").
func coreBrokerConnections(vhost: String) throws -> [String] {
    try RabbitMQ.connections(vhost: vhost, clientPropertiesContaining: "inventory-rpc")
}

/// Closes those connections (all at once), as a broker that went away would.
func closeBrokerConnections(_ pids: [String]) throws {
    try RabbitMQ.closeConnections(pids)
}
