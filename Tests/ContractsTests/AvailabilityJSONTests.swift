import Foundation
import TestSupport
import Testing

@testable import Contracts

@Suite("The hand-written availability reply")
struct AvailabilityJSONTests {
    static let samples: [Availability] = [
        Availability(showtimeId: "showtime_123", availability: []),
        Availability(
            showtimeId: "s:1",
            availability: [
                SeatAvailability(seatId: "seat_1", state: .available),
                SeatAvailability(
                    seatId: "seat_2", state: .held,
                    holdExpiresAt: Date(timeIntervalSince1970: 1_767_269_100.75), version: 7),
                SeatAvailability(seatId: "seat_3", state: .purchased, version: 12),
                SeatAvailability(
                    seatId: "A.9-x", state: .held,
                    holdExpiresAt: Date(timeIntervalSince1970: 946_684_799), version: Int64.max),
            ]
        ),
        // Seats with metadata (issue 15): every field, some, and labels that need escaping or are not ASCII.
        Availability(
            showtimeId: "venue",
            availability: [
                SeatAvailability(
                    seatId: "A1", state: .held, holdExpiresAt: Date(timeIntervalSince1970: 1_767_269_100), version: 3,
                    section: "Stalls", row: "A", number: 1, category: "premium", rank: 0),
                SeatAvailability(seatId: "B2", state: .available, section: "Dress \"Circle\"/Left", number: 100_000),
                SeatAvailability(seatId: "C3", state: .purchased, version: 9, row: "Rang 1 – Mitte", rank: 1_000_000),
                SeatAvailability(seatId: "D4", state: .available, category: "view\\restricted"),
            ]
        ),
        // Never valid identifiers, but the encoder must still agree with JSONEncoder on them.
        Availability(
            showtimeId: "quote\" back\\ slash/ tab\t nl\n bell\u{7} é",
            availability: [SeatAvailability(seatId: "\u{1}\u{1f}", state: .available)]
        ),
    ]

    @Test("it writes exactly what ContractJSON's encoder writes", arguments: samples)
    func sameBytes(_ availability: Availability) throws {
        let expected = try ContractJSON.encode(RPCReply<Availability>.ok(availability))
        let written = AvailabilityJSON.okReply(availability)
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
    }

    @Test("a 2,000-seat reply decodes back into the same availability")
    func roundTrip() throws {
        let seats = (1...2000).map { index in
            index.isMultiple(of: 3)
                ? SeatAvailability(
                    seatId: "seat_\(index)", state: .held,
                    holdExpiresAt: Date(timeIntervalSince1970: 1_800_000_000 + Double(index)),
                    version: Int64(index))
                : SeatAvailability(
                    seatId: "seat_\(index)",
                    state: index.isMultiple(of: 5) ? .purchased : .available,
                    version: Int64(index % 7))
        }
        let availability = Availability(showtimeId: "big", availability: seats)
        let decoded = try ContractJSON.decoder().decode(
            RPCReply<Availability>.self,
            from: Data(AvailabilityJSON.okReply(availability))
        )
        guard case .ok(let back) = decoded else { throw TestFailure("not ok") }
        #expect(back == availability)
    }
}
