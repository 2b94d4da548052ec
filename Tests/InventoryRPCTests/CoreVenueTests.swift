import Contracts
import Foundation
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// INTERFACE.md's "Venue features" over AMQP (issue 15, decisions 0018 and 0019).
    @Suite("Venue features")
    struct VenueTests {
        static func availability(_ core: CoreHarness, _ showtimeID: String) async throws -> Availability {
            try await core.client.call(.availability, AvailabilityRequest(showtimeId: showtimeID))
                .decode(Availability.self).result.get()
        }

        static func bestAvailable(
            _ core: CoreHarness,
            _ showtimeID: String,
            _ quantity: Int,
            section: String? = nil,
            category: String? = nil,
            together: Bool? = nil,
            user: String = "u1"
        ) async throws -> RPCAnswer {
            try await core.client.call(
                .hold,
                BestAvailableHoldRequest(
                    showtimeId: showtimeID,
                    quantity: quantity,
                    userId: user,
                    section: section,
                    category: category,
                    together: together
                )
            )
        }

        @Test(
            "seats.define takes seat objects; availability carries the metadata; new metadata for a held seat is refused and changes nothing; plain ids keep working"
        )
        func seatMetadata() async throws {
            try await withCore { core in
                let seats = venueSeats(rows: 2, perRow: 3)
                let showtimeID = try await core.venue(seats)
                let first = try await Self.availability(core, showtimeID)
                #expect(first.availability.map(\.seatId) == seats.map(\.seatId))
                let a2 = try #require(first.availability.first { $0.seatId == "R1-2" })
                #expect(a2.section == "Stalls" && a2.row == "R1" && a2.number == 2 && a2.category == "premium")
                #expect(a2.rank == 1 && a2.state == .available && a2.version == 0)

                // Plain ids add seats without metadata and leave existing seats alone.
                let plain = try await core.client.call(
                    .seatsDefine,
                    SeatsDefineRequest(showtimeId: showtimeID, seatIds: ["R1-1", "X1"])
                ).decode(SeatsDefined.self).result.get()
                #expect(plain.added == 1 && plain.updated == 0 && plain.seatCount == 7)

                _ = try await core.hold(showtimeID, ["R1-1"]).decode(Hold.self).result.get()
                var moved = seats[0]
                moved.rank = 9
                var other = seats[1]
                other.category = "standard"
                let refused = try await core.client.call(
                    .seatsDefine,
                    SeatsDefineRequest(showtimeId: showtimeID, seats: [other, moved])
                )
                #expect(refused.errorCode == .seatUnavailable)
                #expect(refused.error?.details?["seatIds"] == .array([.string("R1-1")]))
                let after = try await Self.availability(core, showtimeID)
                #expect(after.availability.first { $0.seatId == "R1-2" }?.category == "premium", "nothing changed")

                // An available seat's metadata changes; its version does not (metadata is not its state).
                let changed = try await core.client.call(
                    .seatsDefine,
                    SeatsDefineRequest(showtimeId: showtimeID, seats: [other])
                ).decode(SeatsDefined.self).result.get()
                #expect(changed.added == 0 && changed.updated == 1)
                let last = try await Self.availability(core, showtimeID)
                let r12 = try #require(last.availability.first { $0.seatId == "R1-2" })
                #expect(r12.category == "standard" && r12.version == 0)
                #expect(last.availability.first { $0.seatId == "X1" }?.section == nil)

                // Both forms at once, or neither, is a validation error naming the field.
                let both = try await core.client.call(
                    .seatsDefine,
                    body: Array(#"{"showtimeId":"\#(showtimeID)","seatIds":["a"],"seats":[{"seatId":"a"}]}"#.utf8)
                )
                #expect(both.errorCode == .validationFailed)
                #expect(both.error?.details?["field"] == .string("seats"))
                let badSeat = try await core.client.call(
                    .seatsDefine,
                    body: Array(#"{"showtimeId":"\#(showtimeID)","seats":[{"seatId":"a","rank":-1,"row":""}]}"#.utf8)
                )
                #expect(badSeat.errorCode == .validationFailed)
                #expect(
                    Set(badSeat.error?.validationProblems.map(\.field) ?? []) == ["seats[0].rank", "seats[0].row"]
                )
            }
        }

        @Test(
            "best available: by rank, then row, then the centre; together in one row; section and category filter; SEAT_UNAVAILABLE with details.quantity when no set is free"
        )
        func bestAvailableChoice() async throws {
            try await withCore { core in
                // Row R1 (rank 1) has 5 seats, R2 (rank 1) 5; R3 onwards rank 1 too (five rows a rank).
                let showtimeID = try await core.venue(venueSeats(rows: 2, perRow: 5))
                let centre = try await Self.bestAvailable(core, showtimeID, 1).decode(Hold.self).result.get()
                #expect(centre.seatIds == ["R1-3"], "the first row's centre")
                let pair = try await Self.bestAvailable(core, showtimeID, 2, together: true).decode(Hold.self).result
                    .get()
                #expect(pair.seatIds == ["R1-1", "R1-2"], "the first adjacent pair closest to R1's centre")
                // Each hold by a buyer of its own: one user's 1 + 2 + 3 + 3 seats would meet MAX_SEATS_PER_USER (10)
                // before the refusal this test is about.
                let three = try await Self.bestAvailable(core, showtimeID, 3, together: true, user: "u2").decode(
                    Hold.self
                ).result.get()
                #expect(three.seatIds == ["R2-2", "R2-3", "R2-4"], "R1 has no 3 adjacent seats left")
                let apart = try await Self.bestAvailable(core, showtimeID, 3, user: "u3").decode(Hold.self).result.get()
                #expect(
                    Set(apart.seatIds) == ["R1-4", "R1-5", "R2-1"] || Set(apart.seatIds) == ["R1-4", "R1-5", "R2-5"]
                )
                let none = try await Self.bestAvailable(core, showtimeID, 2, together: true, user: "u4")
                #expect(none.errorCode == .seatUnavailable)
                #expect(none.error?.details == ["quantity": 2])
                let wrongSection = try await Self.bestAvailable(core, showtimeID, 1, section: "Balcony")
                #expect(wrongSection.errorCode == .seatUnavailable)
                let circle = try await Self.bestAvailable(core, showtimeID, 1, category: "standard").decode(Hold.self)
                    .result.get()
                #expect(circle.seatIds.first?.hasPrefix("R2-") == true)

                let noShow = try await Self.bestAvailable(core, "no-such-show", 1)
                #expect(noShow.errorCode == .showtimeNotFound)
                for body in [
                    #"{"showtimeId":"x","userId":"u","quantity":0}"#, #"{"showtimeId":"x","userId":"u","quantity":11}"#,
                    #"{"showtimeId":"x","userId":"u","quantity":1.5}"#,
                    #"{"showtimeId":"x","userId":"u","quantity":2,"seatIds":["a"]}"#,
                    #"{"showtimeId":"x","userId":"u","quantity":2,"together":"yes"}"#,
                ] {
                    let answer = try await core.client.call(.hold, body: Array(body.utf8))
                    #expect(answer.errorCode == .validationFailed, "\(body)")
                }
            }
        }

        @Test(
            "1,000 concurrent best-available requests of 1-4 seats together on a 2,000-seat showtime with enough seats for everyone: none refused, every hold adjacent in one row, no seat in two holds"
        )
        func rushWithRoom() async throws {
            try await withCore(workers: 4) { core in
                let showtimeID = try await core.venue(venueSeats(rows: 100, perRow: 20))
                // Seeded sizes, mostly small: about 1,830 seats asked of 2,000.
                var generator = SeededGenerator(seed: 15)
                let quantities = (0..<1000).map { _ -> Int in
                    let draw = Int.random(in: 0..<100, using: &generator)
                    return draw < 45 ? 1 : draw < 80 ? 2 : draw < 92 ? 3 : 4
                }
                #expect(quantities.reduce(0, +) <= 2000)
                let results = try await bestAvailableRush(core, showtimeID: showtimeID, quantities: quantities)
                let outcome = try checkBestAvailableRush(results, core: core, showtimeID: showtimeID)
                #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(5))")
                #expect(outcome.refused == 0, "refused \(outcome.refused) of 1000 with seats to spare")
                #expect(outcome.created == 1000)
                try await checkSeatVersions(core, showtimeID: showtimeID)
            }
        }

        @Test(
            "a best-available rush that sells the showtime out: refusals (counted) begin only when the seat history shows no suitable free set was left",
            arguments: [true, false]
        )
        func rushToSellOut(together: Bool) async throws {
            try await withCore(workers: 4) { core in
                let showtimeID = try await core.venue(venueSeats(rows: 100, perRow: 20))
                var generator = SeededGenerator(seed: 1507)
                let quantities = (0..<1000).map { _ in Int.random(in: 1...4, using: &generator) }
                let results = try await bestAvailableRush(
                    core,
                    showtimeID: showtimeID,
                    quantities: quantities,
                    together: together
                )
                let outcome = try checkBestAvailableRush(
                    results,
                    core: core,
                    showtimeID: showtimeID,
                    together: together
                )
                #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(5))")
                #expect(outcome.unjustifiedRefusals.isEmpty, "\(outcome.unjustifiedRefusals.prefix(5))")
                #expect(outcome.refused > 0, "asked \(quantities.reduce(0, +)) of 2000 seats")
                #expect(outcome.created + outcome.refused == 1000)
                let free = try core.query(
                    "SELECT count(*) AS n FROM seat_states WHERE showtime_id = $1 AND state = 'available'",
                    [showtimeID]
                )
                print(
                    "best-available sell-out rush (together: \(together)): \(outcome.created) holds, \(outcome.refused) refused, \(free[0]["n"]!) seats left"
                )
            }
        }

        @Test(
            "control: best-available that waits for locked seats instead of skipping them is caught refusing while suitable seats are free",
            arguments: [true, false]
        )
        func rushControl(together: Bool) async throws {
            // One request per transaction (PREFETCH 1, no group commit): the naive function waits for seat locks
            // chosen mid-batch, which in a batch of several would deadlock with other batches (each then waits
            // 1 s for PostgreSQL's deadlock check) instead of showing the refusals this control is about. The
            // production function never waits for a seat it chooses (SKIP LOCKED), so batches suit it.
            try await withCore(workers: 4, prefetch: 1) { core in
                _ = try core.query(naiveBestAvailableSQL)
                let showtimeID = try await core.venue(venueSeats(rows: 100, perRow: 20))
                var generator = SeededGenerator(seed: 1507)
                let quantities = (0..<1000).map { _ in Int.random(in: 1...4, using: &generator) }
                let results = try await bestAvailableRush(
                    core,
                    showtimeID: showtimeID,
                    quantities: quantities,
                    together: together
                )
                let outcome = try checkBestAvailableRush(
                    results,
                    core: core,
                    showtimeID: showtimeID,
                    together: together
                )
                #expect(!outcome.unjustifiedRefusals.isEmpty, "the check must see the race")
            }
        }
    }
}
