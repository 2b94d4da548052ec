import Foundation
import Testing

@testable import Contracts

@Suite("SeatMap: events applied per seat by version")
struct SeatMapTests {
    static let start = Date(timeIntervalSince1970: 1_767_268_800)

    static func event(
        _ id: String,
        _ type: EventType,
        hold: String,
        _ versions: [String: Int64],
        expires: Date? = nil
    ) -> InventoryEvent {
        InventoryEvent(
            eventId: id,
            type: type,
            occurredAt: start,
            showtimeId: "s",
            holdId: hold,
            userId: "u",
            seatIds: versions.keys.sorted(),
            seatVersions: versions,
            expiresAt: expires
        )
    }

    /// Hold A (A1, A2) dies at start + 300 s; hold B takes A2 before the sweep; the sweep frees A1 only.
    static let history = [
        event("e1", .holdCreated, hold: "A", ["A1": 1, "A2": 1], expires: start.addingTimeInterval(300)),
        event("e2", .holdCreated, hold: "B", ["A2": 3, "A3": 1], expires: start.addingTimeInterval(600)),
        event("e3", .holdExpired, hold: "A", ["A1": 2]),
    ]

    @Test("every arrival order of the stale-expiry history ends in the same map, and duplicates change nothing")
    func orderIndependent() {
        let now = Self.start.addingTimeInterval(400)
        let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0], [2, 1, 0, 0, 1, 2]]
        for order in orders {
            var map = SeatMap()
            for index in order { map.apply(Self.history[index]) }
            #expect(map.seat("A1", at: now) == SeatMap.Seat(state: .available, version: 2), "\(order)")
            #expect(map.seat("A2", at: now).state == .held && map.seat("A2", at: now).version == 3, "\(order)")
            #expect(map.seat("A3", at: now).version == 1, "\(order)")
            #expect(map.seat("A4", at: now) == SeatMap.Seat(state: .available, version: 0))
        }
    }

    @Test("a dead hold's seat reads available one version on before its hold.expired arrives")
    func expiryIsAChange() {
        var map = SeatMap()
        map.apply(Self.history[0])
        #expect(map.seat("A1", at: Self.start.addingTimeInterval(299)).state == .held)
        #expect(map.seat("A1", at: Self.start.addingTimeInterval(300)) == SeatMap.Seat(state: .available, version: 2))
        // The snapshot a client loads meanwhile says the same; the later hold.expired (version 2) is not news.
        map.apply(
            Availability(showtimeId: "s", availability: [SeatAvailability(seatId: "A1", state: .available, version: 2)])
        )
        #expect(map.apply(Self.history[2]).isEmpty)
    }

    @Test("a stale event without the seat's newer version is ignored, an older snapshot too")
    func staleIgnored() {
        var map = SeatMap(
            Availability(showtimeId: "s", availability: [SeatAvailability(seatId: "A2", state: .held, version: 3)])
        )
        #expect(map.apply(Self.event("x", .holdExpired, hold: "A", ["A2": 2])).isEmpty)
        map.apply(
            Availability(showtimeId: "s", availability: [SeatAvailability(seatId: "A2", state: .available, version: 1)])
        )
        #expect(map.seat("A2", at: Self.start).state == .held)
    }
}
