import Foundation
import PostgresClient
import Testing

@testable import Bench

@Suite("The verifier")
struct VerifierTests {
    /// Two holds on showtime `st-1`; A is made by the real hold function, B is planted.
    private func plant(_ connection: PostgresConnection) throws -> (a: String, b: String) {
        try connection.query("SELECT * FROM inventory_define_seats('st-1', ARRAY['s1','s2','s3'])")
        let a = try connection.query(
            "SELECT hold_id FROM inventory_hold('hold-a', 'st-1', ARRAY['s1','s2'], 'user-a', NULL, NULL, 300)"
        ).rows[0].decode("hold_id", as: String.self)
        return (a, "hold-b")
    }

    @Test("passes a clean history, then names a planted double hold (seat, both holds, their intervals)")
    func catchesPlantedDoubleHold() throws {
        try withMigratedDatabase { url in
            let connection = try PostgresConnection(url: url, logger: quietLogger)
            defer { connection.close() }
            let (a, b) = try plant(connection)

            let clean = try Verifier.verify(
                databaseURL: url,
                showtimePrefix: "st-",
                wonHolds: nil,
                collector: nil,
                logger: quietLogger
            )
            #expect(clean.passed, "\(clean.text())")

            // A second live hold claiming s2 while hold-a holds it: only a buggy core could write this row.
            try connection.query(
                """
                INSERT INTO holds (hold_id, showtime_id, user_id, seat_ids, status, expires_at, created_at, updated_at)
                VALUES ($1, 'st-1', 'user-b', ARRAY['s2','s3'], 'active', now() + interval '300 seconds',
                        now() + interval '1 second', now() + interval '1 second')
                """,
                [b]
            )
            let summary = try Verifier.verify(
                databaseURL: url,
                showtimePrefix: "st-",
                wonHolds: nil,
                collector: nil,
                logger: quietLogger
            )
            #expect(!summary.passed)
            let doubles = summary.violations.filter { $0.kind == .doubleHold }
            #expect(doubles.count == 1, "\(summary.text())")
            #expect(doubles.first?.message.contains("seat st-1/s2") == true)
            #expect(doubles.first?.message.contains(a) == true && doubles.first?.message.contains(b) == true)
            // The planted row also lacks its seat and its outbox row; both are reported.
            #expect(summary.violations.contains { $0.kind == .seatState && $0.message.contains(b) })
            #expect(summary.violations.contains { $0.kind == .outbox && $0.message.contains(b) })
        }
    }

    @Test("a seat sold twice and a won hold missing from the database are violations")
    func soldTwiceAndMissingWonHold() throws {
        func hold(_ id: String, _ status: String, created: Int64, seats: [String] = ["s1"]) -> DatabaseSnapshot.HoldRow
        {
            DatabaseSnapshot.HoldRow(
                holdID: id,
                showtimeID: "st",
                userID: "u",
                seatIDs: seats,
                status: status,
                createdAt: created,
                expiresAt: created + 300_000_000,
                updatedAt: created + 1_000,
                orderID: status == "purchased" ? "o" : nil
            )
        }
        let snapshot = DatabaseSnapshot(
            holds: [hold("h1", "purchased", created: 1_000), hold("h2", "purchased", created: 2_000_000)],
            outbox: [],
            takenSeats: [],
            now: 3_000_000
        )
        let summary = Verifier.check(
            snapshot,
            wonHolds: [WonHold(holdID: "h9", showtimeID: "st", seatIDs: ["s2"], userID: "u")],
            events: nil
        )
        #expect(summary.violations.contains { $0.kind == .soldTwice && $0.message.contains("st/s1") })
        #expect(summary.violations.contains { $0.kind == .heldAfterSale })
        #expect(summary.violations.contains { $0.kind == .wonHoldMissing && $0.message.contains("h9") })
    }

    @Test("a claim that began before the release committed is ordered by the outbox, not flagged")
    func releaseThenClaimOrderedByOutbox() {
        // h2's transaction started (created_at) before h1's release transaction, and waited for its locks:
        // timestamps overlap, the outbox ids show h1 ended (id 2) before h2 began (id 3).
        let h1 = DatabaseSnapshot.HoldRow(
            holdID: "h1",
            showtimeID: "st",
            userID: "u",
            seatIDs: ["s1"],
            status: "released",
            createdAt: 1_000,
            expiresAt: 300_000_000,
            updatedAt: 5_000
        )
        let h2 = DatabaseSnapshot.HoldRow(
            holdID: "h2",
            showtimeID: "st",
            userID: "u",
            seatIDs: ["s1"],
            status: "active",
            createdAt: 4_000,
            expiresAt: 300_004_000,
            updatedAt: 4_000
        )
        func row(_ id: Int64, _ hold: String, _ type: String) -> DatabaseSnapshot.OutboxRow {
            DatabaseSnapshot.OutboxRow(id: id, eventID: "e\(id)", holdID: hold, type: type, published: true)
        }
        let events = [row(1, "h1", "hold.created"), row(2, "h1", "hold.released"), row(3, "h2", "hold.created")]
        let snapshot = DatabaseSnapshot(
            holds: [h1, h2],
            outbox: events,
            takenSeats: [.init(showtimeID: "st", seatID: "s1", state: "held", holdID: "h2")],
            now: 10_000
        )
        let received = events.enumerated().map { index, row in
            ReceivedEvent(
                eventID: row.eventID,
                type: row.type,
                holdID: row.holdID,
                showtimeID: "st",
                seatIDs: ["s1"],
                sequence: index
            )
        }
        #expect(Verifier.check(snapshot, wonHolds: nil, events: received).passed)

        // The same rows with the release written after h2's claim: a double hold.
        var reversed = snapshot
        reversed.outbox = [row(1, "h1", "hold.created"), row(3, "h1", "hold.released"), row(2, "h2", "hold.created")]
        #expect(Verifier.check(reversed, wonHolds: nil, events: nil).violations.contains { $0.kind == .doubleHold })

        // An event lost on the way, and one nobody committed.
        var lost = received
        lost.removeLast()
        lost.append(
            ReceivedEvent(
                eventID: "ghost",
                type: "hold.expired",
                holdID: "h1",
                showtimeID: "st",
                seatIDs: ["s1"],
                sequence: 9
            )
        )
        let summary = Verifier.check(snapshot, wonHolds: nil, events: lost)
        #expect(summary.violations.contains { $0.kind == .missingEvent && $0.message.contains("h2") })
        #expect(summary.violations.contains { $0.kind == .uncommittedEvent && $0.message.contains("ghost") })
    }
}
