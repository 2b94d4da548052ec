import Synchronization

/// One WebSocket client as the fan-out sees it: its subscriptions and a bounded queue of outgoing text.
///
/// Every method is quick and never waits: they run on the AMQP threads (fan-out, snapshots) and on the
/// client's own task. The client's writer task drains `outbound`; when the queue is full the client is
/// dropped (its channel closed) rather than letting one slow reader hold up anyone else.
final class ClientConnection: Sendable {
    /// A followed showtime: waiting for the snapshot requested under `pendingToken` (events that arrive
    /// meanwhile are kept in `buffered`, in order, and sent right after it), or live (`pendingToken` nil).
    /// A struct mutated in place through the dictionary: keeping an event costs O(1), not a copy of the
    /// events kept so far.
    struct Subscription: Sendable {
        var pendingToken: UInt64?
        var buffered: [String] = []
    }

    enum DropReason: String, Sendable {
        case bufferFull = "buffer_full"
        case writeStalled = "write_stalled"
    }

    private struct State {
        var subscriptions: [String: Subscription] = [:]
        var closed = false
        var dropReason: DropReason?
        var writeStartedAt: ContinuousClock.Instant?
        /// Since when the socket has been seen refusing more data (NIO's channel not writable).
        var unwritableSince: ContinuousClock.Instant?
        /// The writer stopped reading the queue (its socket failed): closed, but not for being slow.
        var writerGone = false
    }

    let id: UInt64
    let capacity: Int
    /// The client's queue, drained by its writer task.
    let outbound: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private let state = Mutex(State())
    private let closeChannel: @Sendable () -> Void
    private let isWritable: @Sendable () -> Bool
    private let onDrop: @Sendable (ClientConnection, DropReason) -> Void

    init(
        id: UInt64,
        capacity: Int,
        closeChannel: @escaping @Sendable () -> Void,
        isWritable: @escaping @Sendable () -> Bool = { true },
        onDrop: @escaping @Sendable (ClientConnection, DropReason) -> Void
    ) {
        self.id = id
        self.capacity = capacity
        (outbound, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingOldest(capacity))
        self.closeChannel = closeChannel
        self.isWritable = isWritable
        self.onDrop = onDrop
    }

    // MARK: Sending

    /// Queues a reply (pong, error, unsubscribed) regardless of subscriptions.
    func send(_ text: String) {
        let dropped = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            return !enqueue(text, &state)
        }
        if dropped { drop(.bufferFull) }
    }

    /// Queues an event of `showtimeId`: sent now if the subscription is live, after its snapshot if
    /// one is pending, not at all without a subscription. Returns whether it was queued.
    @discardableResult
    func deliver(_ text: String, showtimeId: String) -> Bool {
        let (queued, dropped) = state.withLock { state -> (Bool, Bool) in
            // Through the index, in place: no copy of the subscription (and of the events it keeps).
            guard !state.closed, let index = state.subscriptions.index(forKey: showtimeId) else {
                return (false, false)
            }
            guard state.subscriptions.values[index].pendingToken != nil else {
                let ok = enqueue(text, &state)
                return (ok, !ok)
            }
            guard state.subscriptions.values[index].buffered.count < capacity else {
                state.closed = true
                return (false, true)
            }
            state.subscriptions.values[index].buffered.append(text)
            return (true, false)
        }
        if dropped { drop(.bufferFull) }
        return queued
    }

    /// Must be called with the lock held. False when the queue was full (or its reader is gone): the
    /// client is then closed.
    private func enqueue(_ text: String, _ state: inout State) -> Bool {
        switch continuation.yield(text) {
        case .enqueued:
            return true
        case .dropped:
            state.closed = true
            return false
        case .terminated:
            state.closed = true
            state.writerGone = true
            return false
        @unknown default:
            state.closed = true
            return false
        }
    }

    // MARK: Subscriptions

    enum SubscribeOutcome: Equatable {
        /// A snapshot must now be requested under the token.
        case started
        case tooMany
        case closed
    }

    /// Starts (or restarts: a repeated subscribe gets a fresh snapshot) a subscription waiting for the
    /// snapshot requested under `token`. Returns whether the subscription is new (for counting) and
    /// whether it was already waiting for that very token (nothing more to do).
    func beginSubscription(
        _ showtimeId: String,
        token: UInt64,
        limit: Int
    ) -> (SubscribeOutcome, isNew: Bool, alreadyWaiting: Bool) {
        state.withLock { state in
            guard !state.closed else { return (.closed, false, false) }
            guard let current = state.subscriptions[showtimeId] else {
                if state.subscriptions.count >= limit { return (.tooMany, false, false) }
                state.subscriptions[showtimeId] = Subscription(pendingToken: token)
                return (.started, true, false)
            }
            if current.pendingToken == token { return (.started, false, true) }
            if current.pendingToken != nil {
                // Events already kept stay: they follow whichever snapshot arrives.
                state.subscriptions[showtimeId]?.pendingToken = token
            } else {
                state.subscriptions[showtimeId] = Subscription(pendingToken: token)
            }
            return (.started, false, false)
        }
    }

    /// Ends a subscription; returns whether there was one.
    func endSubscription(_ showtimeId: String) -> Bool {
        state.withLock { state in state.subscriptions.removeValue(forKey: showtimeId) != nil }
    }

    var showtimeIds: [String] {
        state.withLock { Array($0.subscriptions.keys) }
    }

    /// After a gap in the event feed: tells the client to forget what it knows of `showtimeId`, and waits
    /// for the snapshot requested under `token`. Returns whether the client follows that showtime.
    func resync(_ showtimeId: String, reason: String, token: UInt64) -> Bool {
        var dropped = false
        let follows = state.withLock { state -> Bool in
            guard !state.closed, state.subscriptions[showtimeId] != nil else { return false }
            if !enqueue(ServerMessage.resync(showtimeId: showtimeId, reason: reason), &state) {
                dropped = true
                return false
            }
            // Events kept for an older snapshot are dropped with it: the new snapshot covers them.
            state.subscriptions[showtimeId] = Subscription(pendingToken: token)
            return true
        }
        if dropped { drop(.bufferFull) }
        return follows
    }

    /// The snapshot requested under `token` arrived: send `texts` (the snapshot, then the events the
    /// hub kept for it), then the events kept here meanwhile; the subscription is live from now on.
    func completeSnapshot(_ showtimeId: String, token: UInt64, texts: [String]) {
        let dropped = state.withLock { state -> Bool in
            guard !state.closed, let subscription = state.subscriptions[showtimeId],
                subscription.pendingToken == token
            else {
                return false
            }
            for message in texts where !enqueue(message, &state) { return true }
            for message in subscription.buffered where !enqueue(message, &state) { return true }
            state.subscriptions[showtimeId] = Subscription(pendingToken: nil)
            return false
        }
        if dropped { drop(.bufferFull) }
    }

    /// The snapshot requested under `token` failed: send `errorText`; then either end the subscription
    /// (`keep` false) or carry on with live events (the client may subscribe again for a snapshot).
    /// Returns whether the subscription ended.
    func failSnapshot(_ showtimeId: String, token: UInt64, errorText: String, keep: Bool) -> Bool {
        var dropped = false
        let ended = state.withLock { state -> Bool in
            guard !state.closed, let subscription = state.subscriptions[showtimeId],
                subscription.pendingToken == token
            else {
                return false
            }
            let messages = keep ? [errorText] + subscription.buffered : [errorText]
            for message in messages where !enqueue(message, &state) {
                dropped = true
                return false
            }
            if keep {
                state.subscriptions[showtimeId] = Subscription(pendingToken: nil)
                return false
            }
            state.subscriptions.removeValue(forKey: showtimeId)
            return true
        }
        if dropped { drop(.bufferFull) }
        return ended
    }

    // MARK: Writing and closing

    func writeStarted(at instant: ContinuousClock.Instant) {
        state.withLock { $0.writeStartedAt = instant }
    }

    func writeFinished() {
        state.withLock { $0.writeStartedAt = nil }
    }

    /// Whether the client has stopped taking data for longer than `timeout`: its writer has waited that
    /// long on one message, or its socket has refused more data at every look since then (the watchdog
    /// looks twice a second; a client that reads at all is seen writable in between).
    func isStalled(now: ContinuousClock.Instant, timeout: Duration) -> Bool {
        let writable = isWritable()
        return state.withLock { state in
            if writable {
                state.unwritableSince = nil
            } else if state.unwritableSince == nil {
                state.unwritableSince = now
            }
            if let started = state.writeStartedAt, started.duration(to: now) > timeout { return true }
            if let since = state.unwritableSince, since.duration(to: now) > timeout { return true }
            return false
        }
    }

    /// Drops a client that cannot keep up: its queue ends and its channel closes at once (a close frame
    /// would only wait behind what the client does not read).
    func drop(_ reason: DropReason) {
        let (first, slow) = state.withLock { state -> (Bool, Bool) in
            guard state.dropReason == nil else { return (false, false) }
            state.dropReason = reason
            state.closed = true
            return (true, !state.writerGone)
        }
        guard first else { return }
        continuation.finish()
        closeChannel()
        if slow { onDrop(self, reason) }
    }

    /// The client went away (or the server is stopping): end the writer.
    func finish() {
        state.withLock { $0.closed = true }
        continuation.finish()
    }

    var subscriptionCount: Int {
        state.withLock { $0.subscriptions.count }
    }
}
