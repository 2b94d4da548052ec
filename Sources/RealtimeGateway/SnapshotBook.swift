/// Which snapshot requests are on their way and which answers may still be handed out: one
/// `availability` RPC per showtime at a time, its answer shared by every subscription that asks while
/// it is on its way, and reused for `reuse` afterwards (decision 0017). A flood of subscribe frames then
/// costs the core nothing more than one request per showtime per `reuse`.
///
/// Correctness (INTERFACE.md rule 8) rests on one detail: a subscription that joins a request made
/// earlier, or takes an answer read earlier, has missed the events published between that request and
/// its joining. So each entry keeps the events of its showtime from the moment its request was made,
/// numbered by the hub's event sequence (taken under the same lock as the subscriber lists); a
/// subscription that joined when the sequence stood at `n` gets the snapshot, then the entry's events
/// numbered up to `n`, then the events it kept itself (those after `n`, which reached it as a follower).
/// Nothing is missed and nothing is sent twice; an event already reflected in the snapshot is harmless,
/// as before (its seat versions are not newer than the snapshot's).
///
/// Pure state, no I/O and no clock of its own; the hub calls it under its registry lock. Bounded: at most
/// `maxInFlight` requests on their way (others are refused at once), at most `maxEvents` events kept per
/// entry (past that the entry takes no new subscriptions: the next one asks afresh), answers kept within
/// `maxCachedBytes`, oldest dropped first. Every operation is O(1) amortized but `complete` (O(waiters))
/// and `invalidateAll` (O(entries)).
struct SnapshotBook<Client, Instant: InstantProtocol> {
    struct Waiter {
        var client: Client
        /// The event sequence when it joined: the entry's events up to it are the ones it missed.
        var joinedAt: UInt64
    }

    private enum Phase {
        case inFlight(waiters: [UInt64: Waiter])
        case ready(text: String, until: Instant)
    }

    private struct Entry {
        var showtimeId: String
        var phase: Phase
        var events: [(sequence: UInt64, text: String)] = []
    }

    enum Join: Equatable {
        /// A request of the same showtime is on its way: the subscription waits for its answer.
        case waiting
        /// An answer may be reused: send these (the snapshot, then the events since its request).
        case ready([String])
        /// No request of this showtime is on its way: make one (under the token given).
        case request
    }

    let reuse: Instant.Duration
    let maxInFlight: Int
    let maxEvents: Int
    let maxCachedBytes: Int

    private var entries: [UInt64: Entry] = [:]
    /// The entry each showtime's new subscriptions join, if any.
    private var current: [String: UInt64] = [:]
    /// Ready entries, oldest first (they all live `reuse`: also soonest to expire first).
    private var readyOrder: [(token: UInt64, until: Instant, bytes: Int)] = []
    private var readyHead = 0
    private var cachedBytes = 0
    private(set) var inFlightCount = 0

    init(reuse: Instant.Duration, maxInFlight: Int, maxEvents: Int, maxCachedBytes: Int = 16 << 20) {
        self.reuse = reuse
        self.maxInFlight = maxInFlight
        self.maxEvents = maxEvents
        self.maxCachedBytes = maxCachedBytes
    }

    /// Entries held (on their way or ready), for tests and bounds.
    var count: Int { entries.count }

    /// The token of the entry a new subscription to `showtimeId` would join, or nil when it needs a new
    /// request (then `canRequest` says whether one may be made).
    mutating func joinableToken(for showtimeId: String, now: Instant) -> UInt64? {
        purge(now: now)
        return current[showtimeId]
    }

    var canRequest: Bool { inFlightCount < maxInFlight }

    /// A subscription of `client` (known by `clientID`) to `showtimeId` under `token`: the token of the
    /// showtime's current entry, or a new one (then an entry is made, and the caller must send its request).
    mutating func join(
        _ showtimeId: String,
        token: UInt64,
        client: Client,
        clientID: UInt64,
        sequence: UInt64
    ) -> Join {
        guard var entry = entries.removeValue(forKey: token) else {
            start(showtimeId, token: token, waiters: [(clientID, client)], sequence: sequence)
            return .request
        }
        // Taken out of the dictionary and emptied before adding a waiter, so that nothing is copied.
        defer { entries[token] = entry }
        switch entry.phase {
        case .inFlight(var waiters):
            entry.phase = .inFlight(waiters: [:])
            if waiters[clientID] == nil { waiters[clientID] = Waiter(client: client, joinedAt: sequence) }
            entry.phase = .inFlight(waiters: waiters)
            return .waiting
        case .ready(let text, _):
            return .ready([text] + entry.events.map(\.text))
        }
    }

    /// A request for `showtimeId` under `token`, made now for `waiters` (a new subscription, or every
    /// follower after a gap). It becomes the showtime's current entry.
    mutating func start(_ showtimeId: String, token: UInt64, waiters: [(UInt64, Client)], sequence: UInt64) {
        if let old = current[showtimeId] { detach(old) }
        var byID: [UInt64: Waiter] = [:]
        for (id, client) in waiters { byID[id] = Waiter(client: client, joinedAt: sequence) }
        entries[token] = Entry(showtimeId: showtimeId, phase: .inFlight(waiters: byID))
        current[showtimeId] = token
        inFlightCount += 1
    }

    /// An event of `showtimeId`, numbered `sequence`, published now: kept by the showtime's current entry.
    mutating func record(_ showtimeId: String, sequence: UInt64, text: String) {
        guard let token = current[showtimeId], let count = entries[token]?.events.count else { return }
        guard count < maxEvents else {
            // Its waiters joined before this event and have what they need; new subscriptions ask afresh.
            detach(token)
            return
        }
        entries[token]?.events.append((sequence, text))
    }

    /// The request under `token` was answered (`text`: the encoded snapshot, nil on failure). Returns the
    /// showtime and, per waiter, the texts it needs after the snapshot (the events it missed). The entry
    /// is kept for reuse when the answer is a snapshot, it is still current and reuse is on.
    mutating func complete(token: UInt64, text: String?, now: Instant) -> (String, [(Client, [String])])? {
        guard let entry = entries[token], case .inFlight(let waiters) = entry.phase else { return nil }
        inFlightCount -= 1
        let deliveries = waiters.values.map { waiter in
            (waiter.client, entry.events.prefix { $0.sequence <= waiter.joinedAt }.map(\.text))
        }
        if let text, current[entry.showtimeId] == token, reuse > .zero {
            let until = now.advanced(by: reuse)
            entries[token] = Entry(
                showtimeId: entry.showtimeId,
                phase: .ready(text: text, until: until),
                events: entry.events
            )
            let bytes = text.utf8.count
            readyOrder.append((token, until, bytes))
            cachedBytes += bytes
            while cachedBytes > maxCachedBytes, readyHead < readyOrder.count { dropOldestReady() }
        } else {
            entries[token] = nil
            if current[entry.showtimeId] == token { current[entry.showtimeId] = nil }
        }
        return (entry.showtimeId, deliveries)
    }

    /// After a gap in the event feed nothing kept is complete: no entry takes new subscriptions, answers
    /// are forgotten. Requests on their way are still answered to their waiters (whose tokens the resync
    /// replaced, so they ignore them).
    mutating func invalidateAll() {
        for token in Array(current.values) { detach(token) }
        current = [:]
    }

    // MARK: Keeping it bounded

    /// An entry no new subscription may join: a ready one is forgotten, one on its way is kept for its
    /// waiters until answered.
    private mutating func detach(_ token: UInt64) {
        guard let entry = entries[token] else { return }
        if current[entry.showtimeId] == token { current[entry.showtimeId] = nil }
        if case .ready = entry.phase { entries[token] = nil }
    }

    /// Forgets the answers whose time is up.
    private mutating func purge(now: Instant) {
        while readyHead < readyOrder.count, readyOrder[readyHead].until <= now { dropOldestReady() }
    }

    private mutating func dropOldestReady() {
        let (token, _, bytes) = readyOrder[readyHead]
        readyHead += 1
        cachedBytes -= bytes
        if let entry = entries[token], case .ready = entry.phase {
            entries[token] = nil
            if current[entry.showtimeId] == token { current[entry.showtimeId] = nil }
        }
        if readyHead > 64 && readyHead * 2 > readyOrder.count {
            readyOrder.removeFirst(readyHead)
            readyHead = 0
        }
    }
}
