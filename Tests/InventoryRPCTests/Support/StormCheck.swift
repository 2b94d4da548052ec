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
                // A buyer per request: 37 users sharing 1,000 holds met MAX_SEATS_PER_USER (10), which the
                // database checks before availability; the limit has tests of its own (CoreSeatLimitTests).
                let answer = try await core.hold(showtimeID, seats, user: "user-\(index)")
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
/// seats that a committed hold holds; no other answer; one `hold.created` per created hold; rule 8 (the
/// events applied per seat by version equal availability). Returns how many holds were created.
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
    try await checkSeatVersions(core, showtimeID: showtimeID, sourceLocation: sourceLocation)
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
    // The relay marks rows after the broker confirmed them, so the mark may follow the events' arrival:
    // wait for it (bounded) rather than read it once.
    let deadline = ContinuousClock.now + timeout
    var unpublished = try core.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    while unpublished.first?["n"] != "0" && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(100))
        unpublished = try core.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    }
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

/// Rule 8 of INTERFACE.md: once every committed event of the showtime has arrived, the events applied per
/// seat by version over an empty map (`SeatMap`) give exactly what `availability` says, seat for seat,
/// state and version; in arrival order, in reverse order and in a shuffled order alike. Also: each event
/// versions exactly the seats it names, and no two events give one seat the same version.
func checkSeatVersions(
    _ core: CoreHarness,
    showtimeID: String,
    timeout: Duration = .seconds(20),
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    func committed() throws -> Set<String> {
        Set(
            try core.query(
                "SELECT o.event_id::text AS event_id FROM outbox o JOIN holds h USING (hold_id) WHERE h.showtime_id = $1",
                [showtimeID]
            ).map { $0["event_id"]! }
        )
    }
    // Until no change commits between reading the outbox and the availability answer.
    for _ in 0..<5 {
        let before = try committed()
        let arrived = await core.events.wait(timeout: timeout) { Set($0.map(\.eventId)).isSuperset(of: before) }
        #expect(arrived, "every committed event of \(showtimeID) arrived", sourceLocation: sourceLocation)
        let asked = Date()
        let availability = try await core.client.call(.availability, AvailabilityRequest(showtimeId: showtimeID))
            .decode(Availability.self).result.get()
        let answered = Date()
        guard try committed() == before else { continue }

        let events = core.events.unique.filter { $0.showtimeId == showtimeID }
        var owners: [String: String] = [:]
        for event in events {
            #expect(
                Set(event.seatVersions.keys) == Set(event.seatIds) && event.seatVersions.count == event.seatIds.count,
                "event \(event.eventId) (\(event.type.rawValue)) versions exactly the seats it names",
                sourceLocation: sourceLocation
            )
            for (seat, version) in event.seatVersions {
                let previous = owners.updateValue(event.eventId, forKey: "\(seat)@\(version)")
                #expect(previous == nil, "seat \(seat) version \(version) given twice", sourceLocation: sourceLocation)
            }
        }
        var generator = SeededGenerator(seed: 0x5EA7)
        for order in [events, events.reversed(), events.shuffled(using: &generator)] {
            var map = SeatMap()
            for event in order { map.apply(event) }
            for seat in availability.availability {
                // The answer judged expiry at some instant between `asked` and `answered`.
                let early = map.seat(seat.seatId, at: asked)
                let late = map.seat(seat.seatId, at: answered)
                let got = SeatMap.Seat(state: seat.state, version: seat.version, holdExpiresAt: seat.holdExpiresAt)
                #expect(
                    got == early || got == late,
                    "seat \(seat.seatId): availability says \(seat.state) v\(seat.version), the events give \(early.state) v\(early.version)",
                    sourceLocation: sourceLocation
                )
            }
        }
        return
    }
    Issue.record("changes kept committing to \(showtimeID); rule 8 not checked", sourceLocation: sourceLocation)
}

/// A small deterministic generator (SplitMix64) for shuffles a failing run can repeat.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
