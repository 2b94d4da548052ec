import Contracts
import Foundation
import Logging
import Synchronization

/// Where snapshots come from: the `availability` RPC in the gateway, a stub in tests.
/// `completion` may run on any thread and must be called exactly once.
public protocol AvailabilitySource: Sendable {
    func requestAvailability(
        showtimeId: String,
        completion: @escaping @Sendable (Result<Availability, ErrorBody>) -> Void
    )
}

/// The fan-out registry: which clients follow which showtimes, and the snapshot requests on their way.
///
/// Thread-safe and non-blocking: the AMQP consumer thread publishes into it directly (one lock to find
/// the subscribers, then each client's own queue), so an event reaches every socket's writer without a
/// hop through any scheduler. Locks: the registry's, and each client's; a client's lock may be taken
/// while the registry's is held, never the other way round.
final class Hub: Sendable {
    private struct Registry {
        var clients: [UInt64: ClientConnection] = [:]
        var subscribers: [String: [UInt64: ClientConnection]] = [:]
        /// Events published so far: numbers them for the snapshot book.
        var sequence: UInt64 = 0
        var snapshots: SnapshotBook<ClientConnection, ContinuousClock.Instant>
    }

    private let registry: Mutex<Registry>
    private let nextToken = Atomic<UInt64>(1)
    private let nextClientID = Atomic<UInt64>(1)
    let metrics: GatewayMetrics
    let availability: any AvailabilitySource
    let clientBufferSize: Int
    let maxSubscriptionsPerClient: Int
    private let now: @Sendable () -> ContinuousClock.Instant
    private let logger: Logger

    /// - Parameters:
    ///   - snapshotReuse: how long a snapshot answer is handed to new subscriptions of its showtime
    ///     (zero: shared only while on its way).
    ///   - maxPendingSnapshots: snapshot requests on their way at once; a subscription that would need
    ///     one more gets `SERVICE_UNAVAILABLE` at once (and its live events).
    ///   - now: the clock (tests move it by hand).
    init(
        metrics: GatewayMetrics,
        availability: any AvailabilitySource,
        clientBufferSize: Int,
        maxSubscriptionsPerClient: Int,
        snapshotReuse: Duration = .seconds(1),
        maxPendingSnapshots: Int = 256,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        logger: Logger
    ) {
        self.metrics = metrics
        self.availability = availability
        self.clientBufferSize = clientBufferSize
        self.maxSubscriptionsPerClient = maxSubscriptionsPerClient
        self.now = now
        self.logger = logger
        registry = Mutex(
            Registry(
                snapshots: SnapshotBook(
                    reuse: snapshotReuse,
                    maxInFlight: maxPendingSnapshots,
                    // More events than a client's queue holds, while one snapshot is on its way or
                    // reused: a fresh snapshot serves the next subscriber better.
                    maxEvents: clientBufferSize
                )
            )
        )
    }

    // MARK: Clients

    func connect(
        closeChannel: @escaping @Sendable () -> Void,
        isWritable: @escaping @Sendable () -> Bool = { true }
    ) -> ClientConnection {
        let id = nextClientID.add(1, ordering: .relaxed).oldValue
        let client = ClientConnection(
            id: id,
            capacity: clientBufferSize,
            closeChannel: closeChannel,
            isWritable: isWritable
        ) {
            [metrics, logger] client, reason in
            switch reason {
            case .bufferFull: metrics.droppedBufferFull.increment()
            case .writeStalled: metrics.droppedWriteStalled.increment()
            }
            logger.info(
                "dropped a client that does not keep up",
                metadata: ["client.id": "\(client.id)", "reason": "\(reason.rawValue)"]
            )
        }
        registry.withLock { $0.clients[id] = client }
        metrics.connections.add(1)
        return client
    }

    func disconnect(_ client: ClientConnection) {
        client.finish()
        let showtimeIds = client.showtimeIds  // read before taking the registry's lock (the lock order)
        let removed = registry.withLock { registry -> Int? in
            guard registry.clients.removeValue(forKey: client.id) != nil else { return nil }
            var removed = 0
            for showtimeId in showtimeIds {
                if registry.subscribers[showtimeId]?.removeValue(forKey: client.id) != nil { removed += 1 }
                if registry.subscribers[showtimeId]?.isEmpty == true { registry.subscribers[showtimeId] = nil }
            }
            return removed
        }
        guard let removed else { return }
        metrics.connections.add(-1)
        metrics.subscriptions.add(-removed)
    }

    var clients: [ClientConnection] {
        registry.withLock { Array($0.clients.values) }
    }

    // MARK: Subscriptions

    func subscribe(_ client: ClientConnection, to showtimeId: String) {
        enum Next {
            case nothing
            /// Joined a request on its way (or was already waiting for it): its answer comes.
            case shared
            case tooMany
            case request(UInt64)
            case ready(UInt64, [String])
            case overloaded(UInt64)
        }
        let instant = now()
        let (next, isNew) = registry.withLock { registry -> (Next, Bool) in
            let joinable = registry.snapshots.joinableToken(for: showtimeId, now: instant)
            let token = joinable ?? nextToken.add(1, ordering: .relaxed).oldValue
            let (outcome, isNew, alreadyWaiting) = client.beginSubscription(
                showtimeId,
                token: token,
                limit: maxSubscriptionsPerClient
            )
            switch outcome {
            case .closed: return (.nothing, false)
            case .tooMany: return (.tooMany, false)
            case .started: break
            }
            if isNew { registry.subscribers[showtimeId, default: [:]][client.id] = client }
            if alreadyWaiting { return (.shared, isNew) }
            if joinable == nil && !registry.snapshots.canRequest { return (.overloaded(token), isNew) }
            switch registry.snapshots.join(
                showtimeId,
                token: token,
                client: client,
                clientID: client.id,
                sequence: registry.sequence
            ) {
            case .waiting: return (.shared, isNew)
            case .ready(let texts): return (.ready(token, texts), isNew)
            case .request: return (.request(token), isNew)
            }
        }
        if isNew { metrics.subscriptions.add(1) }
        switch next {
        case .nothing:
            break
        case .shared:
            metrics.snapshotsShared.increment()
        case .tooMany:
            client.send(
                ServerMessage.error(
                    ErrorBody(
                        code: .validationFailed,
                        message: "A connection may follow at most \(maxSubscriptionsPerClient) showtimes",
                        details: ["field": "showtimeId", "limit": .number(Double(maxSubscriptionsPerClient))]
                    ),
                    showtimeId: showtimeId
                )
            )
        case .request(let token):
            requestSnapshot(showtimeId, token: token)
        case .ready(let token, let texts):
            metrics.snapshotsShared.increment()
            client.completeSnapshot(showtimeId, token: token, texts: texts)
        case .overloaded(let token):
            metrics.snapshotsRefused.increment()
            let error = AvailabilityRPC.unavailable("too many snapshot requests are on their way; subscribe again")
            _ = client.failSnapshot(
                showtimeId,
                token: token,
                errorText: ServerMessage.error(error, showtimeId: showtimeId),
                keep: true
            )
        }
    }

    func unsubscribe(_ client: ClientConnection, from showtimeId: String) {
        if client.endSubscription(showtimeId) { removeSubscriber(client, showtimeId) }
        client.send(ServerMessage.unsubscribed(showtimeId: showtimeId))
    }

    private func removeSubscriber(_ client: ClientConnection, _ showtimeId: String) {
        let removed = registry.withLock { registry -> Bool in
            let removed = registry.subscribers[showtimeId]?.removeValue(forKey: client.id) != nil
            if registry.subscribers[showtimeId]?.isEmpty == true { registry.subscribers[showtimeId] = nil }
            return removed
        }
        if removed { metrics.subscriptions.add(-1) }
    }

    /// Sends the snapshot request of the book's entry `token`; its answer goes to every subscription
    /// that joined the entry meanwhile.
    private func requestSnapshot(_ showtimeId: String, token: UInt64) {
        metrics.snapshotRequests.increment()
        let requestedAt = Date()
        availability.requestAvailability(showtimeId: showtimeId) { [self] result in
            let text = result.map { ServerMessage.snapshot($0, requestedAt: requestedAt) }
            let instant = now()
            let completed = registry.withLock { registry in
                registry.snapshots.complete(token: token, text: try? text.get(), now: instant)
            }
            let deliveries = completed?.1 ?? []
            switch text {
            case .success(let text):
                metrics.snapshotsOK.increment()
                for (client, missed) in deliveries {
                    client.completeSnapshot(showtimeId, token: token, texts: [text] + missed)
                }
            case .failure(let error):
                metrics.snapshotsFailed.increment()
                logger.info(
                    "snapshot failed",
                    metadata: ["showtime.id": "\(showtimeId)", "error.code": "\(error.code.rawValue)"]
                )
                let text = ServerMessage.error(error, showtimeId: showtimeId)
                // An unknown showtime ends the subscription; anything else (broker or core away, timeout)
                // keeps the live events flowing, and the client may subscribe again for a snapshot.
                let keep = error.code != .showtimeNotFound && error.code != .validationFailed
                for (client, _) in deliveries
                where client.failSnapshot(showtimeId, token: token, errorText: text, keep: keep) {
                    removeSubscriber(client, showtimeId)
                }
            }
        }
    }

    // MARK: Events

    /// Fans one event out to the clients that follow its showtime (and keeps it for the subscriptions
    /// that will join the showtime's snapshot request).
    func publish(_ event: InventoryEvent) {
        let text = ServerMessage.event(event)
        let subscribers = registry.withLock { registry -> [ClientConnection] in
            registry.sequence += 1
            registry.snapshots.record(event.showtimeId, sequence: registry.sequence, text: text)
            return registry.subscribers[event.showtimeId].map { Array($0.values) } ?? []
        }
        guard !subscribers.isEmpty else { return }
        var queued = 0
        for client in subscribers where client.deliver(text, showtimeId: event.showtimeId) { queued += 1 }
        metrics.messagesFannedOut.increment(by: queued)
    }

    /// After a gap in the event feed (the broker connection was lost and is back): every subscription
    /// gets a `resync` and then a fresh snapshot, one `availability` request per showtime. Nothing the
    /// snapshot book kept is reused: it may lack what the gap swallowed.
    func resync(reason: String) {
        let requests = registry.withLock { registry -> [(String, UInt64)] in
            registry.snapshots.invalidateAll()
            var requests: [(String, UInt64)] = []
            for (showtimeId, subscribers) in registry.subscribers {
                let token = nextToken.add(1, ordering: .relaxed).oldValue
                let waiting = subscribers.filter { $0.value.resync(showtimeId, reason: reason, token: token) }
                guard !waiting.isEmpty else { continue }
                registry.snapshots.start(
                    showtimeId,
                    token: token,
                    waiters: waiting.map { ($0.key, $0.value) },
                    sequence: registry.sequence
                )
                requests.append((showtimeId, token))
            }
            return requests
        }
        guard !requests.isEmpty else { return }
        metrics.resyncs.increment()
        logger.info(
            "resync after a gap in the event feed",
            metadata: ["showtimes": "\(requests.count)", "reason": "\(reason)"]
        )
        for (showtimeId, token) in requests { requestSnapshot(showtimeId, token: token) }
    }

    /// Drops clients that took no data for longer than `timeout`: they stopped reading.
    func dropStalledWriters(olderThan timeout: Duration, now: ContinuousClock.Instant) {
        for client in clients where client.isStalled(now: now, timeout: timeout) {
            client.drop(.writeStalled)
        }
    }
}
