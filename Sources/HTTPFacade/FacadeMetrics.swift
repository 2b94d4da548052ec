import Metrics

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
