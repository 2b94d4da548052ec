import Contracts
import Foundation
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// INTERFACE.md rule 8 over AMQP: a dead hold's seats taken by a newer hold before the sweep are not
    /// in the dead hold's `hold.expired`, versions grow per seat, and the events applied per seat by version
    /// give exactly what `availability` says. (On the core before rule 8, the sweep's and the release's
    /// `hold.expired` named every seat of the dead hold, the re-taken ones too; decision 0012.)
    @Suite("Per-seat versions")
    struct SeatVersionTests {
        /// Waits until the database clock has passed `expiresAt`.
        static func waitPast(_ expiresAt: Date, core: CoreHarness) async throws {
            while true {
                let passed = try core.query("SELECT now() >= $1::timestamptz AS passed", [expiresAt])
                if passed.first?["passed"] == "t" { return }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        static func availability(_ core: CoreHarness, _ showtimeID: String) async throws -> Availability {
            try await core.client.call(.availability, AvailabilityRequest(showtimeId: showtimeID))
                .decode(Availability.self).result.get()
        }

        static func version(_ availability: Availability, _ seat: String) -> Int64? {
            availability.availability.first { $0.seatId == seat }?.version
        }

        @Test(
            "HOLD_TTL 2 s, sweep every 8 s: a seat re-held before the sweep is not in the sweep's hold.expired, and the events applied by version equal availability"
        )
        func staleSweep() async throws {
            // Sweeps run at start and every 8 s; the first hold expires at most 3 s after start.
            try await withCore(holdTTL: 2, expiryInterval: 8) { core in
                let showtimeID = try await core.showtime(seats: 4)
                let first = try await core.hold(showtimeID, ["s1", "s2", "s3"], user: "erin").decode(Hold.self).result
                    .get()
                let before = try await Self.availability(core, showtimeID)
                #expect(["s1", "s2", "s3"].map { Self.version(before, $0) } == [1, 1, 1])
                #expect(Self.version(before, "s4") == 0)

                try await Self.waitPast(first.expiresAt, core: core)
                #expect(
                    try core.query("SELECT status FROM holds WHERE hold_id = $1", [first.holdId]).first?["status"]
                        == "active",
                    "not swept yet"
                )
                // Dead but unswept: its seats read available, one version on, without any write.
                let dead = try await Self.availability(core, showtimeID)
                for seat in ["s1", "s2", "s3"] {
                    #expect(dead.availability.first { $0.seatId == seat }?.state == .available)
                    #expect(Self.version(dead, seat) == 2)
                }
                let second = try await core.hold(showtimeID, ["s2", "s4"], user: "frank").decode(Hold.self).result.get()
                let middle = try await Self.availability(core, showtimeID)
                #expect(Self.version(middle, "s2") == 3, "the expiry (2), then the new claim (3)")
                #expect(Self.version(middle, "s4") == 1)

                // The sweep frees what the dead hold still had: s1 and s3, at the versions availability gave.
                let swept = await core.events.wait(timeout: .seconds(15)) { events in
                    events.contains { $0.type == .holdExpired && $0.holdId == first.holdId }
                }
                #expect(swept)
                let expired = try #require(
                    core.events.unique.first { $0.type == .holdExpired && $0.holdId == first.holdId }
                )
                #expect(expired.seatIds == ["s1", "s3"], "s2 belongs to \(second.holdId) now")
                #expect(expired.seatVersions == ["s1": 2, "s3": 2])
                let created = try #require(
                    core.events.unique.first { $0.type == .holdCreated && $0.holdId == second.holdId }
                )
                #expect(created.seatVersions == ["s2": 3, "s4": 1])

                try await checkEventsMatchOutbox(core)
                try await checkSeatVersions(core, showtimeID: showtimeID)
                // Frank's hold (TTL 2 s too) dies in turn: its seats read available one version on.
                try await Self.waitPast(second.expiresAt, core: core)
                let final = try await Self.availability(core, showtimeID)
                #expect(final.availability.map(\.version) == [2, 4, 2, 2])
                #expect(final.summary.available == 4)
                try await checkSeatVersions(core, showtimeID: showtimeID)
            }
        }

        @Test(
            "a release of a dead, unswept hold whose seats were all re-held publishes hold.expired naming no seat; the events applied by version equal availability"
        )
        func staleRelease() async throws {
            try await withCore(holdTTL: 2, expiryInterval: 3600) { core in
                let showtimeID = try await core.showtime(seats: 3)
                let first = try await core.hold(showtimeID, ["s1", "s2"], user: "erin").decode(Hold.self).result.get()
                let keep = try await core.hold(showtimeID, ["s3"], user: "gina").decode(Hold.self).result.get()
                try await Self.waitPast(first.expiresAt, core: core)
                _ = try await core.hold(showtimeID, ["s1"], user: "frank").decode(Hold.self).result.get()
                _ = try await core.hold(showtimeID, ["s2"], user: "hank").decode(Hold.self).result.get()

                let released = try await core.client.call(
                    .release,
                    ReleaseRequest(holdId: first.holdId, userId: "erin")
                )
                .decode(Hold.self).result.get()
                #expect(released.status == .expired)
                let ended = await core.events.wait { events in
                    events.contains { $0.type == .holdExpired && $0.holdId == first.holdId }
                }
                #expect(ended)
                let expired = try #require(
                    core.events.unique.first { $0.type == .holdExpired && $0.holdId == first.holdId }
                )
                #expect(expired.seatIds.isEmpty, "both seats belong to newer holds")
                #expect(expired.seatVersions.isEmpty)

                // A dead hold's own seats, released by its owner: hold.expired names them, one version on.
                try await Self.waitPast(keep.expiresAt, core: core)
                _ = try await core.client.call(.release, ReleaseRequest(holdId: keep.holdId, userId: "gina"))
                    .decode(Hold.self).result.get()
                let keptEnded = await core.events.wait { events in
                    events.contains { $0.type == .holdExpired && $0.holdId == keep.holdId }
                }
                #expect(keptEnded)
                let keptExpired = try #require(
                    core.events.unique.first { $0.type == .holdExpired && $0.holdId == keep.holdId }
                )
                #expect(keptExpired.seatIds == ["s3"] && keptExpired.seatVersions == ["s3": 2])

                try await checkEventsMatchOutbox(core)
                try await checkSeatVersions(core, showtimeID: showtimeID)
            }
        }

        @Test("a live release and a purchase each step their seats' versions by one")
        func releaseAndPurchase() async throws {
            try await withCore { core in
                let showtimeID = try await core.showtime(seats: 2)
                let first = try await core.hold(showtimeID, ["s1", "s2"]).decode(Hold.self).result.get()
                _ = try await core.client.call(.release, ReleaseRequest(holdId: first.holdId, userId: "u1"))
                    .decode(Hold.self).result.get()
                let second = try await core.hold(showtimeID, ["s2"]).decode(Hold.self).result.get()
                _ = try await core.client.call(
                    .purchase,
                    PurchaseRequest(holdId: second.holdId, orderId: "o-1", userId: "u1")
                )
                .decode(Hold.self).result.get()
                let done = await core.events.wait { events in
                    events.contains { $0.type == .seatsPurchased && $0.holdId == second.holdId }
                }
                #expect(done)
                let versions = core.events.unique.filter { $0.showtimeId == showtimeID }.map { event in
                    "\(event.type.rawValue) \(event.seatIds.map { seat in "\(seat)@\(event.seatVersions[seat] ?? -1)" })"
                }
                #expect(
                    versions == [
                        #"hold.created ["s1@1", "s2@1"]"#, #"hold.released ["s1@2", "s2@2"]"#,
                        #"hold.created ["s2@3"]"#, #"seats.purchased ["s2@4"]"#,
                    ]
                )
                try await checkSeatVersions(core, showtimeID: showtimeID)
            }
        }
    }
}
