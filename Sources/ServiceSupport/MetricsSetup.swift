import Metrics
import Prometheus

/// swift-metrics backed by swift-prometheus, and the text `/metrics` serves.
public enum MetricsSetup {
    /// The registry every metric of the process lands in.
    public static let registry = PrometheusCollectorRegistry()

    private static let bootstrapped: Void = {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }()

    /// Points swift-metrics at ``registry``. Once per process (in `main`); later calls do nothing.
    public static func bootstrap() {
        _ = bootstrapped
    }

    /// The `Content-Type` of ``exposition(of:)``.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// `registry` in Prometheus's text format, for a `/metrics` response body.
    public static func exposition(of registry: PrometheusCollectorRegistry = MetricsSetup.registry) -> [UInt8] {
        registry.emitToBuffer()
    }
}
