import HTTPServer
import Metrics
import Synchronization

/// The facade's metrics, through swift-metrics (the process bootstraps it with ServiceSupport's
/// Prometheus registry, which `/metrics` renders). Labels are bounded: `route` is a template or
/// `unmatched`, `status` a status code.
struct FacadeMetrics: Sendable {
    private let inFlight = Meter(label: "http_requests_in_flight")
    private let rpcTimeouts = Counter(label: "rpc_timeouts_total")

    func requestStarted() {
        inFlight.increment()
    }

    func requestFinished(route: String, status: Int, duration: Duration) {
        inFlight.decrement()
        Counter(label: "http_requests_total", dimensions: [("route", route), ("status", "\(status)")]).increment()
        let (seconds, attoseconds) = duration.components
        Timer(label: "http_request_duration_seconds", dimensions: [("route", route)])
            .recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// `policy` is one of four names, so the label stays bounded.
    func rateLimited(policy: String) {
        Counter(label: "facade_rate_limited_total", dimensions: [("policy", policy)]).increment()
    }

    func rpcTimedOut() {
        rpcTimeouts.increment()
    }
}

/// The HTTP daemon's counters as metrics, brought up to date when `/metrics` is read:
/// `http_connections_open`, `http_body_bytes_buffered` (gauges), `http_connections_refused_total{reason}`
/// (`per_address`, `overloaded`) and `http_connections_timed_out_total`.
final class EdgeMetrics: Sendable {
    private let source = Mutex<(daemon: HTTPDaemon?, last: HTTPServerStatistics?)>((nil, nil))
    private let open = Gauge(label: "http_connections_open")
    private let buffered = Gauge(label: "http_body_bytes_buffered")
    private let refusedPerAddress = Counter(
        label: "http_connections_refused_total",
        dimensions: [("reason", "per_address")]
    )
    private let refusedOverloaded = Counter(
        label: "http_connections_refused_total",
        dimensions: [("reason", "overloaded")]
    )
    private let timedOut = Counter(label: "http_connections_timed_out_total")

    func attach(_ daemon: HTTPDaemon) {
        source.withLock { $0.daemon = daemon }
    }

    func update() {
        source.withLock { state in
            guard let daemon = state.daemon else { return }
            let now = daemon.statistics
            let last = state.last
            open.record(now.openConnections)
            buffered.record(now.bufferedBodyBytes)
            refusedPerAddress.increment(by: Int64(now.refusedPerAddress - (last?.refusedPerAddress ?? 0)))
            refusedOverloaded.increment(by: Int64(now.refusedOverloaded - (last?.refusedOverloaded ?? 0)))
            timedOut.increment(by: Int64(now.timedOut - (last?.timedOut ?? 0)))
            state.last = now
        }
    }
}
