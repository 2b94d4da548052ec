import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import Bench
@testable import InventoryRPC

/// Rule 8 of INTERFACE.md in the verifier (and so in the fault suite's checker): the events applied per
/// seat by version over an empty map must equal the seat rows and the availability answer.
@Suite("The verifier's rule-8 check")
struct VerifierSeatVersionTests {
    /// The stale-expiry history, made by the schema's own functions: hold A takes s1 and s2 for 1 s; once
    /// the database clock passed its expiry, hold B takes s2 before any sweep; then the sweep runs.
    /// Returns the events as a consumer gets them (the outbox payloads, in commit order) and the snapshot.
    static func staleExpiry(migrations: [Migration]) throws -> (events: [ReceivedEvent], snapshot: DatabaseSnapshot) {
        let migrate: (PostgresConnection) throws -> Void = {
            _ = try Migrator.migrate($0, migrations: migrations, logger: quietLogger)
        }
        return try withScratchDatabase(prefix: "inv_bench_test", prepare: migrate) { url in
            let connection = try PostgresConnection(url: url, logger: quietLogger)
            defer { connection.close() }
            try connection.query("SELECT * FROM inventory_define_seats('st-v', ARRAY['s1','s2','s3'])")
            let expires = try connection.query(
                "SELECT expires_at_ms FROM inventory_hold('hold-a', 'st-v', ARRAY['s1','s2'], 'user-a', NULL, NULL, 1)"
            ).rows[0].decode("expires_at_ms", as: Int64.self)
            while try connection.query("SELECT inventory_epoch_ms(now()) >= $1 AS passed", [expires]).rows[0]["passed"]
                != "t"
            {
                Thread.sleep(forTimeInterval: 0.05)
            }
            let b = try connection.query(
                "SELECT outcome FROM inventory_hold('hold-b', 'st-v', ARRAY['s2','s3'], 'user-b', NULL, NULL, 300)"
            ).rows[0]
            #expect(b["outcome"] == "created")
            try connection.query("SELECT * FROM inventory_expire_holds(10)")
            let events = try connection.query("SELECT payload::text AS payload FROM outbox ORDER BY id").rows
                .enumerated()
                .map { index, row in
                    try #require(
                        ReceivedEvent.decode(Array(try row.decode("payload", as: String.self).utf8), sequence: index)
                    )
                    .event
                }
            return (events, try DatabaseSnapshot.read(connection, showtimePrefix: "st-"))
        }
    }

    @Test(
        "it catches the stale hold.expired of the schema before per-seat versions (every migration before 5, main before rule 8)"
    )
    func catchesStaleExpiryBeforeVersions() throws {
        let (events, snapshot) = try Self.staleExpiry(migrations: Migrations.all.filter { $0.version < 5 })
        // That schema's sweep named both of hold A's seats, s2 included, after hold B had taken it.
        #expect(events.map(\.type) == ["hold.created", "hold.created", "hold.expired"])
        #expect(events.last?.seatIDs == ["s1", "s2"])
        let summary = Verifier.check(snapshot, wonHolds: nil, events: events)
        let found = summary.violations.filter { $0.kind == .seatVersions }
        #expect(found.contains { $0.message.contains("carries no seatVersions") }, "\(summary.text())")
        #expect(
            found.contains { $0.message.contains("seat st-v/s2") && $0.message.contains("give available") },
            "a consumer shows s2 free while hold B holds it: \(summary.text())"
        )
    }

    @Test("the same history with per-seat versions passes, in arrival and in reverse order")
    func passesWithVersions() throws {
        let (events, snapshot) = try Self.staleExpiry(migrations: Migrations.all)
        #expect(events.last?.type == "hold.expired" && events.last?.seatIDs == ["s1"])
        #expect(events.last?.seatVersions == ["s1": 2])
        #expect(Verifier.check(snapshot, wonHolds: nil, events: events).passed)
        var reversed = events.reversed().enumerated().map { index, event in
            var event = event
            event.sequence = index
            return event
        }
        // (Reversed, each hold's events are out of order too, which the event-order check flags on its own.)
        #expect(Verifier.checkSeatVersions(events: reversed, snapshot: snapshot).isEmpty)

        // A stale event planted by hand (hold A's expiry claiming s2 at an old version) changes nothing
        // for a consumer applying by version, but two changes of s2 now share a version: flagged.
        reversed.append(
            ReceivedEvent(
                eventID: "planted",
                type: "hold.expired",
                holdID: "hold-a",
                showtimeID: "st-v",
                seatIDs: ["s2"],
                sequence: 99,
                seatVersions: ["s2": 1]
            )
        )
        let planted = Verifier.checkSeatVersions(events: reversed, snapshot: snapshot)
        #expect(planted.contains { $0.message.contains("both claim version 1") }, "\(planted)")
    }

    @Test("events whose versions disagree with the rows, or that version other seats than they name, are violations")
    func pureDisagreements() {
        let held = DatabaseSnapshot.SeatVersion(state: "held", version: 3, holdExpiresAt: 9_000_000)
        let snapshot = DatabaseSnapshot(
            holds: [],
            outbox: [],
            takenSeats: [],
            now: 1_000_000,
            seats: ["st/a": held, "st/b": DatabaseSnapshot.SeatVersion(state: "available", version: 0)],
            availability: ["st/a": held, "st/b": DatabaseSnapshot.SeatVersion(state: "available", version: 0)],
            transactionNow: 1_000_000
        )
        func event(
            _ id: String,
            _ type: String,
            seats: [String],
            versions: [String: Int64],
            sequence: Int
        ) -> ReceivedEvent {
            ReceivedEvent(
                eventID: id,
                type: type,
                holdID: "h",
                showtimeID: "st",
                seatIDs: seats,
                sequence: sequence,
                seatVersions: versions,
                expiresAt: type == "hold.created" ? 9_000_000 : nil
            )
        }
        let good = [event("e1", "hold.created", seats: ["a"], versions: ["a": 3], sequence: 0)]
        #expect(Verifier.checkSeatVersions(events: good, snapshot: snapshot).isEmpty)
        // The hold's expiry has passed by the snapshot's clock: the events say available, one on.
        var later = snapshot
        later.transactionNow = 9_000_000
        later.seats["st/a"] = DatabaseSnapshot.SeatVersion(state: "available", version: 4)
        later.availability["st/a"] = DatabaseSnapshot.SeatVersion(state: "available", version: 4)
        #expect(Verifier.checkSeatVersions(events: good, snapshot: later).isEmpty)

        let old = [event("e1", "hold.created", seats: ["a"], versions: ["a": 2], sequence: 0)]
        #expect(
            Verifier.checkSeatVersions(events: old, snapshot: snapshot).contains {
                $0.message.contains("give held v2, the seat row says held v3")
            }
        )
        let mislabelled = [event("e1", "hold.created", seats: ["a", "b"], versions: ["a": 3], sequence: 0)]
        #expect(
            Verifier.checkSeatVersions(events: mislabelled, snapshot: snapshot).contains {
                $0.message.contains("names seats")
            }
        )
    }
}
