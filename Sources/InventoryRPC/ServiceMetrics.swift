import CoreMetrics

/// The core's metrics, created once. Label values are bounded: operations, outcomes (error codes) and
/// drop reasons are fixed sets.
struct ServiceMetrics: Sendable {
    /// `inventory_rpc_requests_total{operation,outcome}`; outcome is `ok` or the error code.
    func request(operation: String, outcome: String, duration: Duration) {
        Counter(label: "inventory_rpc_requests_total", dimensions: [("operation", operation), ("outcome", outcome)])
            .increment()
        CoreMetrics.Timer(label: "inventory_rpc_duration_seconds", dimensions: [("operation", operation)])
            .recordNanoseconds(duration.nanoseconds)
    }

    /// `inventory_holds_total{outcome}`: created, replayed, or the error code.
    func hold(outcome: String) {
        Counter(label: "inventory_holds_total", dimensions: [("outcome", outcome)]).increment()
    }

    func expired(_ count: Int) {
        guard count > 0 else { return }
        Counter(label: "inventory_holds_expired_total").increment(by: count)
    }

    func redisFallback() {
        Counter(label: "inventory_redis_fallbacks_total").increment()
    }

    /// `inventory_rpc_dropped_total{reason}`: deadline, no_reply_to.
    /// A group commit of `size` hold requests (decision 0022): the mean batch is requests / batches.
    func holdBatch(size: Int) {
        Counter(label: "inventory_hold_batches_total").increment()
        Counter(label: "inventory_hold_batch_requests_total").increment(by: size)
    }

    /// Requests a batch deferred (their locks were busy) and decided alone.
    func holdsDeferred(_ count: Int) {
        Counter(label: "inventory_holds_deferred_total").increment(by: count)
    }

    func dropped(reason: String) {
        Counter(label: "inventory_rpc_dropped_total", dimensions: [("reason", reason)]).increment()
    }

    func outboxLag(seconds: Double) {
        Gauge(label: "inventory_outbox_lag_seconds").record(seconds)
    }

    /// `inventory_outbox_published_total{result}`: confirmed (routed) or returned (nobody bound).
    func outboxPublished(_ count: Int, returned: Int) {
        if count - returned > 0 {
            Counter(label: "inventory_outbox_published_total", dimensions: [("result", "confirmed")])
                .increment(by: count - returned)
        }
        if returned > 0 {
            Counter(label: "inventory_outbox_published_total", dimensions: [("result", "returned")])
                .increment(by: returned)
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
