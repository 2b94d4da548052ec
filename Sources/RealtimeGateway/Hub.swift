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

/// The fan-out registry: which clients follow which showtimes.
///
/// Thread-safe and non-blocking: the AMQP consumer thread publishes into it directly (one lock to find
/// the subscribers, then each client's own queue), so an event reaches every socket's writer without a
/// hop through any scheduler.
final class Hub: Sendable {
    private struct Registry {
        var clients: [UInt64: ClientConnection] = [:]
        var subscribers: [String: [UInt64: ClientConnection]] = [:]
    }

    private let registry = Mutex(Registry())
    private let nextToken = Atomic<UInt64>(1)
    private let nextClientID = Atomic<UInt64>(1)
    let metrics: GatewayMetrics
    let availability: any AvailabilitySource
    let clientBufferSize: Int
    let maxSubscriptionsPerClient: Int
    private let logger: Logger

    init(
        metrics: GatewayMetrics,
        availability: any AvailabilitySource,
        clientBufferSize: Int,
        maxSubscriptionsPerClient: Int,
        logger: Logger
    ) {
        self.metrics = metrics
        self.availability = availability
        self.clientBufferSize = clientBufferSize
        self.maxSubscriptionsPerClient = maxSubscriptionsPerClient
        self.logger = logger
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
        let showtimeIds = client.showtimeIds  // read before taking the registry's lock: never both at once
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
        let token = nextToken.add(1, ordering: .relaxed).oldValue
        let (outcome, isNew) = client.beginSubscription(
            showtimeId,
            token: token,
            limit: maxSubscriptionsPerClient
        )
        switch outcome {
        case .closed:
            return
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
            return
        case .started:
            break
        }
        if isNew {
            registry.withLock { $0.subscribers[showtimeId, default: [:]][client.id] = client }
            metrics.subscriptions.add(1)
        }
        requestSnapshot(showtimeId, token: token, for: [client])
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

    private func requestSnapshot(_ showtimeId: String, token: UInt64, for clients: [ClientConnection]) {
        let requestedAt = Date()
        availability.requestAvailability(showtimeId: showtimeId) { [self] result in
            switch result {
            case .success(let availability):
                metrics.snapshotsOK.increment()
                let text = ServerMessage.snapshot(availability, requestedAt: requestedAt)
                for client in clients { client.completeSnapshot(showtimeId, token: token, text: text) }
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
                for client in clients
                where client.failSnapshot(showtimeId, token: token, errorText: text, keep: keep) {
                    removeSubscriber(client, showtimeId)
                }
            }
        }
    }

    // MARK: Events

    /// Fans one event out to the clients that follow its showtime.
    func publish(_ event: InventoryEvent) {
        let subscribers = registry.withLock { $0.subscribers[event.showtimeId].map { Array($0.values) } ?? [] }
        guard !subscribers.isEmpty else { return }
        let text = ServerMessage.event(event)
        var queued = 0
        for client in subscribers where client.deliver(text, showtimeId: event.showtimeId) { queued += 1 }
        metrics.messagesFannedOut.increment(by: queued)
    }

    /// After a gap in the event feed (the broker connection was lost and is back): every subscription
    /// gets a `resync` and then a fresh snapshot, one `availability` request per showtime.
    func resync(reason: String) {
        var tokens: [String: UInt64] = [:]
        var waiting: [String: [ClientConnection]] = [:]
        for client in clients {
            let showtimes = client.resync(reason: reason) { showtimeId in
                if let token = tokens[showtimeId] { return token }
                let token = nextToken.add(1, ordering: .relaxed).oldValue
                tokens[showtimeId] = token
                return token
            }
            for showtimeId in showtimes { waiting[showtimeId, default: []].append(client) }
        }
        guard !waiting.isEmpty else { return }
        metrics.resyncs.increment()
        logger.info(
            "resync after a gap in the event feed",
            metadata: ["showtimes": "\(waiting.count)", "reason": "\(reason)"]
        )
        for (showtimeId, clients) in waiting {
            requestSnapshot(showtimeId, token: tokens[showtimeId]!, for: clients)
        }
    }

    /// Drops clients that took no data for longer than `timeout`: they stopped reading.
    func dropStalledWriters(olderThan timeout: Duration, now: ContinuousClock.Instant) {
        for client in clients where client.isStalled(now: now, timeout: timeout) {
            client.drop(.writeStalled)
        }
    }
}
