import Contracts
import Foundation
import Synchronization

/// One seat as its row says in some snapshot. What availability shows of it depends on the clock too: a seat
/// of a dead hold is available from its `holdExpiresAt` on (`shown(at:)`).
struct SeatRow: Sendable, Hashable {
    var seatID: String
    /// The row's state: `held` even when the hold is dead (the sweep has not freed it yet).
    var state: SeatState
    /// Epoch microseconds, on held seats only.
    var holdExpiresAt: Int64?
    /// The row's version.
    var version: Int64
    var section: String?
    var row: String?
    var number: Int?
    var category: String?
    var rank: Int?

    /// The seat as `inventory_availability` shows it when the database clock reads `now` (epoch microseconds):
    /// held by a dead hold is available, one version on (INTERFACE.md rules 3 and 8, decision 0012).
    func shown(at now: Int64) -> SeatAvailability {
        let dead = state == .held && (holdExpiresAt ?? .min) <= now
        return SeatAvailability(
            seatId: seatID,
            state: dead ? .available : state,
            holdExpiresAt: state == .held && !dead ? holdExpiresAt.map(Self.date) : nil,
            version: version + (dead ? 1 : 0),
            section: section,
            row: self.row,
            number: number,
            category: category,
            rank: rank
        )
    }

    static func date(_ microseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(microseconds) / 1_000_000)
    }
}

/// What `InventoryStore.availabilityRows` read: seat rows, and the snapshot and clock they were read at.
struct AvailabilityRows: Sendable {
    /// `pg_current_snapshot()` of the read, as text: what the next read asks "changed since?" about.
    var snapshot: String
    /// The database clock of the read (`now()`), epoch microseconds.
    var now: Int64
    /// `seats` are all of the showtime's, in seat map order (none: no seat map); otherwise only the seats
    /// changed since the snapshot asked about, in no particular order (none: nothing changed).
    var whole: Bool
    var seats: [SeatRow]
}

/// A showtime's seats as one snapshot saw them, and the availability reply encoded from them. Immutable:
/// shared by every worker thread that reads it.
final class AvailabilityEntry: Sendable {
    let showtimeID: String
    let snapshot: String
    let seats: [SeatRow]
    /// Seat id → index in `seats`.
    let positions: [String: Int]
    /// The encoded `availability.request` reply (`AvailabilityJSON.okReply`).
    let reply: [UInt8]
    /// `reply` is what availability says for every clock reading in `replyFrom..<replyUntil` (epoch
    /// microseconds): the latest expiry already passed and the next one to come among the held seats.
    let replyFrom: Int64
    let replyUntil: Int64

    /// An entry for `seats` (seat map order) read at `snapshot`, its reply shown at `now`.
    init(showtimeID: String, snapshot: String, seats: [SeatRow], positions: [String: Int]? = nil, now: Int64) {
        self.showtimeID = showtimeID
        self.snapshot = snapshot
        self.seats = seats
        self.positions =
            positions ?? Dictionary(seats.enumerated().map { ($1.seatID, $0) }, uniquingKeysWith: { first, _ in first })
        var from = Int64.min
        var until = Int64.max
        for seat in seats where seat.state == .held {
            guard let expiresAt = seat.holdExpiresAt else { continue }
            if expiresAt <= now { from = max(from, expiresAt) } else { until = min(until, expiresAt) }
        }
        replyFrom = from
        replyUntil = until
        reply = AvailabilityJSON.okReply(
            Availability(showtimeId: showtimeID, availability: seats.map { $0.shown(at: now) })
        )
    }

    /// The same seats and reply, known unchanged up to `snapshot`.
    private init(_ entry: AvailabilityEntry, snapshot: String) {
        showtimeID = entry.showtimeID
        self.snapshot = snapshot
        seats = entry.seats
        positions = entry.positions
        reply = entry.reply
        replyFrom = entry.replyFrom
        replyUntil = entry.replyUntil
    }

    func shows(at now: Int64) -> Bool { replyFrom <= now && now < replyUntil }

    /// The entry brought up to `rows` (a read of the seats changed since `snapshot`), or nil when a changed seat
    /// is not one of this entry's (the caller reads the showtime whole).
    func updated(with rows: AvailabilityRows) -> AvailabilityEntry? {
        if rows.seats.isEmpty {
            if shows(at: rows.now) { return AvailabilityEntry(self, snapshot: rows.snapshot) }
            return AvailabilityEntry(
                showtimeID: showtimeID,
                snapshot: rows.snapshot,
                seats: seats,
                positions: positions,
                now: rows.now
            )
        }
        var seats = self.seats
        for seat in rows.seats {
            guard let index = positions[seat.seatID] else { return nil }
            seats[index] = seat
        }
        return AvailabilityEntry(
            showtimeID: showtimeID,
            snapshot: rows.snapshot,
            seats: seats,
            positions: positions,
            now: rows.now
        )
    }
}

/// The availability read path (issue 16 item 4, decision 0023): per showtime, the seat rows of the last read and
/// the reply encoded from them, shared by the core's worker threads. Every read still asks the database, in one
/// round trip, which seats changed since the entry's snapshot (`inventory_availability_since`, migration 13),
/// so an answer is never older than the request: a hold committed by any thread or process before the read
/// began is in it, and expiry is judged by the clock of that same read. Only the unchanged part (the rows,
/// the encoding) is reused.
///
/// Bounded by `seatBudget` seats over all entries (the least recently read go first); a showtime larger than the
/// budget is answered but not kept.
final class AvailabilityCache: Sendable {
    /// About 250 bytes a seat (row, index, reply): 50,000 seats are about 12 MB.
    static let defaultSeatBudget = 50_000

    let seatBudget: Int
    private let state: Mutex<State>

    private struct State {
        var entries: [String: (entry: AvailabilityEntry, used: UInt64)] = [:]
        var seats = 0
        var clock: UInt64 = 0
        var statistics = Statistics()
    }

    /// How reads were answered (for tests and the benchmark's account).
    struct Statistics: Sendable, Hashable {
        /// Read whole: first read, evicted, too old, seats added, or a changed seat the entry did not have.
        var whole = 0
        /// Some seats changed: re-read by primary key and re-encoded.
        var patched = 0
        /// Nothing changed: the reply reused (or only re-shown because a hold's expiry passed).
        var unchanged = 0
    }

    init(seatBudget: Int = defaultSeatBudget) {
        self.seatBudget = seatBudget
        state = Mutex(State())
    }

    var statistics: Statistics { state.withLock { $0.statistics } }

    /// The availability reply for `showtimeID`, or nil when it has no seat map. `read(since)` is
    /// `InventoryStore.availabilityRows` on the calling thread's connection.
    func reply(showtimeID: String, read: (_ since: String?) throws -> AvailabilityRows) throws -> [UInt8]? {
        let cached = state.withLock { state -> AvailabilityEntry? in
            guard let found = state.entries[showtimeID] else { return nil }
            state.clock += 1
            state.entries[showtimeID]?.used = state.clock
            return found.entry
        }
        var rows = try read(cached?.snapshot)
        if !rows.whole, let cached, Self.wentBack(from: cached.snapshot, to: rows.snapshot) {
            rows = try read(nil)
        }
        if !rows.whole, let updated = cached?.updated(with: rows) {
            count(rows.seats.isEmpty ? \.unchanged : \.patched)
            keep(updated)
            return updated.reply
        }
        if !rows.whole { rows = try read(nil) }
        count(\.whole)
        guard !rows.seats.isEmpty else {
            remove(showtimeID)
            return nil
        }
        let entry = AvailabilityEntry(showtimeID: showtimeID, snapshot: rows.snapshot, seats: rows.seats, now: rows.now)
        keep(entry)
        return entry.reply
    }

    /// Transaction ids went back between two snapshots (`xmin:xmax:xip`): the cached one's oldest running id is past
    /// every id the new one has seen, as when a running core finds the database replaced by a restored copy. Its
    /// changes' ids say nothing about the cached snapshot then: the showtime is read whole.
    static func wentBack(from cached: String, to current: String) -> Bool {
        func field(_ snapshot: String, _ index: Int) -> UInt64? {
            let parts = snapshot.split(separator: ":", omittingEmptySubsequences: false)
            return parts.count > index ? UInt64(parts[index]) : nil
        }
        guard let xmin = field(cached, 0), let xmax = field(current, 1) else { return true }
        return xmin > xmax
    }

    private func count(_ outcome: WritableKeyPath<Statistics, Int>) {
        state.withLock { $0.statistics[keyPath: outcome] += 1 }
    }

    private func remove(_ showtimeID: String) {
        state.withLock { state in
            if let old = state.entries.removeValue(forKey: showtimeID) { state.seats -= old.entry.seats.count }
        }
    }

    /// Keeps `entry` (any entry is right as of its own snapshot, so the last one kept wins), then evicts the
    /// least recently read entries while over the budget.
    private func keep(_ entry: AvailabilityEntry) {
        guard entry.seats.count <= seatBudget else { return remove(entry.showtimeID) }
        state.withLock { state in
            state.clock += 1
            let old = state.entries.updateValue((entry, state.clock), forKey: entry.showtimeID)
            state.seats += entry.seats.count - (old?.entry.seats.count ?? 0)
            while state.seats > seatBudget,
                let oldest = state.entries.min(by: { $0.value.used < $1.value.used })?.key
            {
                if let evicted = state.entries.removeValue(forKey: oldest) { state.seats -= evicted.entry.seats.count }
            }
        }
    }

    // MARK: One cache per database

    private static let caches = Mutex<[String: WeakCache]>([:])

    private struct WeakCache {
        weak var cache: AvailabilityCache?
    }

    /// The cache of the process's worker threads that use `databaseURL` (cores of one process on different
    /// databases, as in the tests, never share one). Held by the request handlers: gone with the last of them.
    static func shared(databaseURL: String) -> AvailabilityCache {
        caches.withLock { caches in
            if let cache = caches[databaseURL]?.cache { return cache }
            caches = caches.filter { $0.value.cache != nil }
            let cache = AvailabilityCache()
            caches[databaseURL] = WeakCache(cache: cache)
            return cache
        }
    }
}
