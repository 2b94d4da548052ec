import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// The availability read path (issue 16 item 4, decision 0023): a cache in front of one connection, the writes on
/// others (another thread or process of the core, or SQL by hand). Every cached answer is compared byte for byte
/// with what the uncached path (`inventory_availability`, encoded by `AvailabilityJSON`) says at the same moment.
@Suite("Storage: availability cache")
struct AvailabilityCacheTests {
    /// A reader (its own connection and cache) and a writer on another connection.
    final class Reader {
        let reader: StoreFixture
        let cache: AvailabilityCache

        init(_ url: String, seatBudget: Int = AvailabilityCache.defaultSeatBudget) throws {
            reader = try StoreFixture(url)
            cache = AvailabilityCache(seatBudget: seatBudget)
        }

        func reply(_ showtimeID: String) throws -> [UInt8]? {
            try cache.reply(showtimeID: showtimeID) { since in
                try reader.store.availabilityRows(showtimeID: showtimeID, since: since)
            }
        }

        func availability(_ showtimeID: String) throws -> Availability {
            let reply = try #require(try reply(showtimeID))
            return try ContractJSON.decoder().decode(RPCReply<Availability>.self, from: Data(reply)).result.get()
        }

        /// The cached reply equals the uncached one (no hold of the showtime expires around the call).
        func expectSameAsUncached(_ showtimeID: String, _ comment: Comment? = nil) throws {
            let cached = try #require(try reply(showtimeID))
            let uncached = AvailabilityJSON.okReply(try reader.store.availability(showtimeID: showtimeID).get())
            #expect(
                String(decoding: cached, as: UTF8.self) == String(decoding: uncached, as: UTF8.self),
                comment
            )
        }
    }

    /// Waits until the database clock has passed `date` (a bounded poll: nothing can be awaited).
    static func waitPast(_ date: Date, _ fixture: StoreFixture) async throws {
        for _ in 0..<500 {
            if try fixture.connection.query("SELECT now() >= $1::timestamptz AS passed", [date]).rows[0]["passed"]
                == "t"
            {
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("the database clock did not pass \(date)")
    }

    @Test(
        "writes on another connection (hold, extension, purchase, release, metadata, added seats) show in the next cached read, byte for byte the uncached answer"
    )
    func writesElsewhereShow() throws {
        try withTestDatabase { url in
            let r = try Reader(url)
            let writer = try StoreFixture(url)
            try writer.define("show", ["A", "B", "C", "D"])
            try r.expectSameAsUncached("show", "first read")
            try r.expectSameAsUncached("show", "nothing changed")
            #expect(r.cache.statistics == .init(whole: 1, patched: 0, unchanged: 1))

            let hold = try #require(try writer.created("show", ["B", "C"]))
            try r.expectSameAsUncached("show", "after a hold")
            #expect(try r.availability("show").availability.map(\.state) == [.available, .held, .held, .available])
            _ = try writer.store.extend(HoldExtendRequest(holdId: hold.holdId), ttlSeconds: 600, maxHoldSeconds: 900)
                .get()
            try r.expectSameAsUncached("show", "after an extension")
            _ = try writer.store.purchase(PurchaseRequest(holdId: hold.holdId, orderId: "o1")).get()
            try r.expectSameAsUncached("show", "after a purchase")
            let other = try #require(try writer.created("show", ["A"], user: "user_2"))
            _ = try writer.store.release(ReleaseRequest(holdId: other.holdId)).get()
            try r.expectSameAsUncached("show", "after a hold and its release")
            // A: held, released; B and C: held, extended, purchased.
            #expect(try r.availability("show").availability.map(\.version) == [2, 3, 3, 0])
            _ = try writer.store.defineSeats(
                SeatsDefineRequest(
                    showtimeId: "show",
                    seats: [SeatDefinition(seatId: "D", section: "stalls", row: "1")]
                )
            )
            try r.expectSameAsUncached("show", "after new metadata")
            let patched = r.cache.statistics
            #expect(patched.whole == 1, "every change so far re-read only the changed seats")
            #expect(patched.patched >= 5)

            try writer.define("show", ["E", "A"])
            try r.expectSameAsUncached("show", "after an added seat")
            #expect(try r.availability("show").availability.map(\.seatId) == ["A", "B", "C", "D", "E"])
            #expect(r.cache.statistics.whole == 2, "an added seat re-reads the showtime whole")
        }
    }

    @Test("a write that began before a cached read and committed after it shows in the next read")
    func writeCommittedAfterTheRead() throws {
        try withTestDatabase { url in
            let r = try Reader(url)
            let writer = try StoreFixture(url)
            try writer.define("show", ["A", "B"])
            // An early transaction that writes and commits late (a slow hold), and a later one that commits
            // first: a watermark or sequence number taken at the read would skip the early one.
            let slow = try TestDatabase.connect(url)
            defer { slow.close() }
            try slow.query("BEGIN")
            try slow.query("SELECT pg_current_xact_id()")
            try r.expectSameAsUncached("show", "read while the slow transaction runs")
            try slow.query(
                "SELECT (inventory_hold('slow-hold', 'show', ARRAY['A'], 'user_slow', NULL, NULL, 300)).outcome"
            )
            _ = try #require(try writer.created("show", ["B"]))
            try r.expectSameAsUncached("show", "the fast hold committed, the slow one not yet")
            #expect(try r.availability("show").availability.map(\.state) == [.available, .held])
            try slow.query("COMMIT")
            try r.expectSameAsUncached("show", "the slow hold committed")
            #expect(try r.availability("show").availability.map(\.state) == [.held, .held])
        }
    }

    @Test(
        "a cached hold shows as available at its expiresAt without the sweep and without a write, one version on; the sweep then changes no version"
    )
    func expiryWithoutTheSweep() async throws {
        try await withTestDatabase { url in
            let r = try Reader(url)
            let writer = try StoreFixture(url)
            try writer.define("show", ["A", "B", "C"])
            let short = try #require(try writer.created("show", ["A", "B"], ttl: 1))
            _ = try #require(try writer.created("show", ["C"], user: "user_2", ttl: 300))
            let live = try r.availability("show")
            #expect(live.availability.map(\.state) == [.held, .held, .held])
            #expect(live.availability.map(\.version) == [1, 1, 1])
            let before = r.cache.statistics

            try await Self.waitPast(short.expiresAt, r.reader)
            let dead = try r.availability("show")
            #expect(dead.availability.map(\.state) == [.available, .available, .held])
            #expect(dead.availability.map(\.version) == [2, 2, 1])
            #expect(dead.availability[0].holdExpiresAt == nil && dead.availability[2].holdExpiresAt != nil)
            #expect(dead.summary == AvailabilitySummary(available: 2, held: 1, purchased: 0))
            #expect(
                r.cache.statistics.unchanged == before.unchanged + 1,
                "shown from the cached rows by the read's clock, nothing re-read"
            )
            try r.expectSameAsUncached("show", "expired, unswept")

            #expect(try writer.store.expireDueHolds(batchSize: 10).map(\.holdID) == [short.holdId])
            let swept = try r.availability("show")
            #expect(swept.availability.map(\.version) == [2, 2, 1], "the sweep writes the version availability showed")
            #expect(swept.availability.map(\.state) == [.available, .available, .held])
            try r.expectSameAsUncached("show", "swept")
        }
    }

    @Test("versions stay exact after cached reads: each seat's version equals its row's (plus one while dead)")
    func versionsExact() throws {
        try withTestDatabase { url in
            let r = try Reader(url)
            let writer = try StoreFixture(url)
            let seats = (1...50).map { "s\($0)" }
            try writer.define("show", seats)
            _ = try r.reply("show")
            var holds: [Hold] = []
            for round in 0..<20 {
                let chosen = Array(seats.shuffled().prefix(3))
                if let hold = try writer.created("show", chosen, user: "user_\(round)") { holds.append(hold) }
                if round % 3 == 0, let first = holds.first {
                    _ = try writer.store.release(ReleaseRequest(holdId: first.holdId)).get()
                    holds.removeFirst()
                }
                let shown = try r.availability("show")
                let rows = try writer.connection.query(
                    "SELECT seat_id, version FROM seat_states WHERE showtime_id = 'show' ORDER BY position"
                ).rows
                #expect(shown.availability.map(\.seatId) == seats)
                #expect(
                    shown.availability.map(\.version) == (try rows.map { try $0.decode("version", as: Int64.self) })
                )
            }
            #expect(r.cache.statistics.whole == 1)
        }
    }

    @Test("old change rows are pruned below a horizon; a snapshot older than the horizon re-reads the showtime whole")
    func pruning() throws {
        try withTestDatabase { url in
            let r = try Reader(url)
            let writer = try StoreFixture(url)
            try writer.define("show", ["A", "B"])
            _ = try r.reply("show")
            _ = try #require(try writer.created("show", ["A"]))
            #expect(try writer.int("SELECT count(*) AS n FROM availability_changes") >= 2)
            // Each prune deletes below the horizon the previous one recorded (the oldest transaction then running,
            // server-wide: other tests' transactions may hold it back, so only the rule is checked here).
            func horizon() throws -> (pruned: String, next: String) {
                let row = try writer.connection.query(
                    "SELECT pruned_below::text AS pruned, next_below::text AS next FROM availability_horizon"
                ).rows[0]
                return (try row.decode("pruned"), try row.decode("next"))
            }
            for _ in 0..<2 {
                let before = try horizon()
                _ = try writer.store.pruneAvailabilityChanges()
                #expect(try horizon().pruned == before.next)
                #expect(
                    try writer.int(
                        "SELECT count(*) AS n FROM availability_changes WHERE xid < (SELECT pruned_below FROM availability_horizon)"
                    ) == 0
                )
            }
            // As if a prune had passed the cached snapshot.
            try writer.connection.query("UPDATE availability_horizon SET pruned_below = pg_current_xact_id()")
            try r.expectSameAsUncached("show", "the cached snapshot is older than the horizon")
            #expect(r.cache.statistics.whole == 2)
            #expect(try r.availability("show").availability.map(\.state) == [.held, .available])
        }
    }

    @Test("a showtime without a seat map is not found and not kept; one over the seat budget is answered, not kept")
    func notFoundAndBudget() throws {
        try withTestDatabase { url in
            let r = try Reader(url, seatBudget: 5)
            let writer = try StoreFixture(url)
            #expect(try r.reply("nowhere") == nil)
            try writer.define("small", ["A", "B", "C"])
            try writer.define("other", ["A", "B", "C"])
            try writer.define("big", (1...6).map { "s\($0)" })
            try r.expectSameAsUncached("small")
            try r.expectSameAsUncached("other", "evicts small: 6 seats over a budget of 5")
            try r.expectSameAsUncached("small", "read whole again")
            try r.expectSameAsUncached("big", "answered, not kept")
            try r.expectSameAsUncached("big", "answered, not kept")
            #expect(r.cache.statistics == .init(whole: 6, patched: 0, unchanged: 0))
        }
    }
}

extension CoreServiceTests {
    /// The read path end to end: two `inventory-rpc serve` processes (each with its own cache, four worker threads
    /// each) and writes made outside them.
    @Suite("Availability across processes")
    struct AvailabilityAcrossProcessesTests {
        static func availability(_ core: CoreHarness, _ showtimeID: String) async throws -> Availability {
            try await core.client.call(.availability, AvailabilityRequest(showtimeId: showtimeID))
                .decode(Availability.self).result.get()
        }

        @Test(
            "a hold decided by another process (or by either core) after availability was read and cached shows in every later availability"
        )
        func holdElsewhereShows() async throws {
            try await withCore(workers: 4, processes: 2) { core in
                let showtimeID = try await core.showtime(seats: 6)
                // Read often enough that both processes' caches hold the showtime.
                for _ in 0..<16 {
                    #expect(try await Self.availability(core, showtimeID).summary.available == 6)
                }
                // A hold committed by this test process, which no core hears of.
                let outside = try StoreFixture(core.databaseURL)
                _ = try #require(try outside.created(showtimeID, ["s2", "s3"], user: "outsider"))
                for _ in 0..<16 {
                    let seen = try await Self.availability(core, showtimeID)
                    #expect(
                        seen.availability.map(\.state) == [
                            .available, .held, .held, .available, .available, .available,
                        ]
                    )
                    #expect(seen.availability.map(\.version) == [0, 1, 1, 0, 0, 0])
                }
                // Holds decided by the cores, each followed at once by availability (either process answers).
                for seat in ["s1", "s4", "s5"] {
                    _ = try await core.hold(showtimeID, [seat], user: "user-\(seat)").decode(Hold.self).result.get()
                    for _ in 0..<4 {
                        let seen = try await Self.availability(core, showtimeID)
                        #expect(seen.availability.first { $0.seatId == seat }?.state == .held)
                    }
                }
                #expect(try await Self.availability(core, showtimeID).summary.held == 5)
                try await checkSeatVersions(core, showtimeID: showtimeID)
            }
        }

        @Test("a held seat read and cached shows as available at its expiresAt, one version on, before any sweep")
        func expiryWithoutTheSweep() async throws {
            try await withCore(holdTTL: 2, expiryInterval: 3600, workers: 4, processes: 2) { core in
                let showtimeID = try await core.showtime(seats: 3)
                let hold = try await core.hold(showtimeID, ["s1", "s2"]).decode(Hold.self).result.get()
                for _ in 0..<8 {
                    #expect(try await Self.availability(core, showtimeID).summary.held == 2)
                }
                try await CoreServiceTests.SeatVersionTests.waitPast(hold.expiresAt, core: core)
                for _ in 0..<8 {
                    let seen = try await Self.availability(core, showtimeID)
                    #expect(seen.availability.map(\.state) == [.available, .available, .available])
                    #expect(seen.availability.map(\.version) == [2, 2, 0])
                }
                #expect(
                    try core.query("SELECT status FROM holds WHERE hold_id = $1", [hold.holdId]).first?["status"]
                        == "active",
                    "not swept"
                )
            }
        }
    }
}

/// The cache's decisions, with the database's answers made up.
@Suite("Availability cache: decisions")
struct AvailabilityCacheUnitTests {
    static let held = SeatRow(seatID: "B", state: .held, holdExpiresAt: 2_000_000, version: 3)

    @Test("the reply is shown by the read's clock: a held seat is available from its expiresAt, one version on")
    func shownByTheClock() {
        #expect(Self.held.shown(at: 1_999_999).state == .held)
        #expect(Self.held.shown(at: 1_999_999).version == 3)
        #expect(Self.held.shown(at: 1_999_999).holdExpiresAt == Date(timeIntervalSince1970: 2))
        #expect(Self.held.shown(at: 2_000_000).state == .available)
        #expect(Self.held.shown(at: 2_000_000).version == 4)
        #expect(Self.held.shown(at: 2_000_000).holdExpiresAt == nil)
    }

    @Test("each read asks about the entry's snapshot; unchanged seats keep the reply until a hold's expiry passes")
    func asksWithTheSnapshot() throws {
        let cache = AvailabilityCache()
        let seats = [SeatRow(seatID: "A", state: .available, version: 0), Self.held]
        var asked: [String?] = []
        func read(_ answer: AvailabilityRows) throws -> [UInt8]? {
            try cache.reply(showtimeID: "show") { since in
                asked.append(since)
                return answer
            }
        }
        let first = try read(AvailabilityRows(snapshot: "11:11:", now: 1_000_000, whole: true, seats: seats))
        let same = try read(AvailabilityRows(snapshot: "12:12:", now: 1_500_000, whole: false, seats: []))
        #expect(first == same)
        let expired = try read(AvailabilityRows(snapshot: "13:13:", now: 2_000_000, whole: false, seats: []))
        #expect(expired != same)
        let changed = try read(
            AvailabilityRows(
                snapshot: "14:14:",
                now: 2_100_000,
                whole: false,
                seats: [SeatRow(seatID: "A", state: .held, holdExpiresAt: 9_000_000, version: 1)]
            )
        )
        #expect(asked == [nil, "11:11:", "12:12:", "13:13:"])
        let decoded = try ContractJSON.decoder().decode(RPCReply<Availability>.self, from: Data(try #require(changed)))
            .result.get()
        #expect(decoded.availability.map(\.state) == [.held, .available])
        #expect(decoded.availability.map(\.version) == [1, 4])
        #expect(cache.statistics == .init(whole: 1, patched: 1, unchanged: 2))
    }

    @Test("a cached snapshot from the future (transaction ids went back: a restored database) reads whole")
    func idsWentBack() throws {
        #expect(AvailabilityCache.wentBack(from: "900:905:901,903", to: "100:100:"))
        #expect(!AvailabilityCache.wentBack(from: "900:905:901,903", to: "900:905:"))
        #expect(!AvailabilityCache.wentBack(from: "900:905:", to: "904:910:"))
        #expect(AvailabilityCache.wentBack(from: "garbage", to: "1:1:"))
        let cache = AvailabilityCache()
        let a = SeatRow(seatID: "A", state: .available, version: 0)
        let held = SeatRow(seatID: "A", state: .held, holdExpiresAt: 9_000_000, version: 1)
        _ = try cache.reply(showtimeID: "show") { _ in
            AvailabilityRows(snapshot: "900:905:", now: 0, whole: true, seats: [a])
        }
        var asked: [String?] = []
        let reply = try cache.reply(showtimeID: "show") { since in
            asked.append(since)
            return since == nil
                ? AvailabilityRows(snapshot: "100:100:", now: 0, whole: true, seats: [held])
                : AvailabilityRows(snapshot: "100:100:", now: 0, whole: false, seats: [])
        }
        #expect(asked == ["900:905:", nil])
        let decoded = try ContractJSON.decoder().decode(RPCReply<Availability>.self, from: Data(try #require(reply)))
            .result.get()
        #expect(decoded.availability.map(\.state) == [.held])
    }

    @Test("a changed seat the entry does not know makes the read ask again for the whole showtime")
    func unknownSeatReadsWhole() throws {
        let cache = AvailabilityCache()
        let a = SeatRow(seatID: "A", state: .available, version: 0)
        _ = try cache.reply(showtimeID: "show") { _ in
            AvailabilityRows(snapshot: "11:11:", now: 0, whole: true, seats: [a])
        }
        var asked: [String?] = []
        let reply = try cache.reply(showtimeID: "show") { since in
            asked.append(since)
            let z = SeatRow(seatID: "Z", state: .available, version: 0)
            return since == nil
                ? AvailabilityRows(snapshot: "13:13:", now: 0, whole: true, seats: [a, z])
                : AvailabilityRows(snapshot: "12:12:", now: 0, whole: false, seats: [z])
        }
        #expect(asked == ["11:11:", nil])
        let decoded = try ContractJSON.decoder().decode(RPCReply<Availability>.self, from: Data(try #require(reply)))
            .result.get()
        #expect(decoded.availability.map(\.seatId) == ["A", "Z"])
    }
}
