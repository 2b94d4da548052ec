import Metrics
import Synchronization

/// The gateway's numbers, for `/metrics` (swift-metrics, so Prometheus text once `MetricsSetup` is
/// bootstrapped) and for tests (`snapshot()`, per gateway instance even when several share a process).
public final class GatewayMetrics: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var connections: Int
        public var subscriptions: Int
        public var eventsReceived: Int
        public var eventsDuplicate: Int
        public var eventsInvalid: Int
        public var messagesFannedOut: Int
        public var clientsDroppedBufferFull: Int
        public var clientsDroppedWriteStalled: Int
        public var resyncs: Int
        public var brokerConnected: Bool
        public var snapshotRequests: Int = 0
        public var snapshotsShared: Int = 0
        public var snapshotsRefused: Int = 0
        public var connectionsRefused: Int = 0
        public var clientsDroppedMessageRate: Int = 0
    }

    final class Count: Sendable {
        private let value = Atomic<Int>(0)
        private let counter: Counter
        init(_ label: String, _ dimensions: [(String, String)] = []) {
            counter = Counter(label: label, dimensions: dimensions)
        }
        func increment(by amount: Int = 1) {
            value.add(amount, ordering: .relaxed)
            counter.increment(by: amount)
        }
        var current: Int { value.load(ordering: .relaxed) }
    }

    final class Level: Sendable {
        private let value = Atomic<Int>(0)
        private let gauge: Gauge
        init(_ label: String) { gauge = Gauge(label: label) }
        func add(_ amount: Int) {
            let now = value.add(amount, ordering: .relaxed).newValue
            gauge.record(now)
        }
        func set(_ now: Int) {
            value.store(now, ordering: .relaxed)
            gauge.record(now)
        }
        var current: Int { value.load(ordering: .relaxed) }
    }

    let connections = Level("realtime_gateway_connections")
    let subscriptions = Level("realtime_gateway_subscriptions")
    let eventsReceived = Count("realtime_gateway_events_received_total")
    let eventsDuplicate = Count("realtime_gateway_events_duplicate_total")
    let eventsInvalid = Count("realtime_gateway_events_invalid_total")
    /// Event messages queued to clients (one event to three subscribers counts three).
    let messagesFannedOut = Count("realtime_gateway_messages_fanned_out_total")
    let droppedBufferFull = Count("realtime_gateway_clients_dropped_total", [("reason", "buffer_full")])
    let droppedWriteStalled = Count("realtime_gateway_clients_dropped_total", [("reason", "write_stalled")])
    let resyncs = Count("realtime_gateway_resyncs_total")
    let snapshotsOK = Count("realtime_gateway_snapshots_total", [("result", "ok")])
    let snapshotsFailed = Count("realtime_gateway_snapshots_total", [("result", "error")])
    let brokerConnected = Level("realtime_gateway_broker_connected")
    /// `availability` requests sent to the core (one per showtime at a time, decision 0017).
    let snapshotRequests = Count("realtime_gateway_snapshot_requests_total")
    /// Subscriptions served by a request made for another (joined on its way, or its answer reused).
    let snapshotsShared = Count("realtime_gateway_snapshots_shared_total")
    /// Subscriptions refused a snapshot because too many requests were on their way.
    let snapshotsRefused = Count("realtime_gateway_snapshots_refused_total")
    /// Connections refused before the WebSocket upgrade, by reason.
    let refusedOrigin = Count("realtime_gateway_connections_refused_total", [("reason", "origin")])
    let refusedAddressLimit = Count("realtime_gateway_connections_refused_total", [("reason", "address_limit")])
    let refusedTotalLimit = Count("realtime_gateway_connections_refused_total", [("reason", "total_limit")])
    let handshakeTimeouts = Count("realtime_gateway_handshake_timeouts_total")
    let droppedMessageRate = Count("realtime_gateway_clients_dropped_total", [("reason", "message_rate")])

    public init() {}

    public func snapshot() -> Snapshot {
        Snapshot(
            connections: connections.current,
            subscriptions: subscriptions.current,
            eventsReceived: eventsReceived.current,
            eventsDuplicate: eventsDuplicate.current,
            eventsInvalid: eventsInvalid.current,
            messagesFannedOut: messagesFannedOut.current,
            clientsDroppedBufferFull: droppedBufferFull.current,
            clientsDroppedWriteStalled: droppedWriteStalled.current,
            resyncs: resyncs.current,
            brokerConnected: brokerConnected.current == 1,
            snapshotRequests: snapshotRequests.current,
            snapshotsShared: snapshotsShared.current,
            snapshotsRefused: snapshotsRefused.current,
            connectionsRefused: refusedOrigin.current + refusedAddressLimit.current + refusedTotalLimit.current,
            clientsDroppedMessageRate: droppedMessageRate.current
        )
    }
}
