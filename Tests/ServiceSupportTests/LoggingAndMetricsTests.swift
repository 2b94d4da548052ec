import Logging
import Metrics
import Synchronization
import Testing

@testable import ServiceSupport

@Suite("Logging, metrics and start-up lines")
struct LoggingAndMetricsTests {
    @Test("a log event is one line: timestamp, level, label, message, sorted metadata")
    func lineFormat() throws {
        let lines = Mutex<[String]>([])
        var handler = LineLogHandler(label: "inventory-rpc", level: .info) { line in
            lines.withLock { $0.append(line) }
        }
        handler[metadataKey: "worker"] = "3"
        let logger = Logger(label: "inventory-rpc", factory: { _ in handler })
        logger.info("hold created", metadata: ["hold.id": "h_1", "seat.ids": "A1 A2"])
        logger.debug("not at info")
        let written = lines.withLock { $0 }
        #expect(written.count == 1)
        let line = try #require(written.first)
        #expect(line.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z .*/) != nil)
        #expect(line.hasSuffix(" info inventory-rpc: hold created hold.id=h_1 seat.ids=\"A1 A2\" worker=3"))
    }

    @Test("values that would break the line are quoted and escaped")
    func quoting() {
        #expect(LineLogHandler.quoted("plain") == "plain")
        #expect(LineLogHandler.quoted("") == "\"\"")
        #expect(LineLogHandler.quoted("a=b") == "\"a=b\"")
        #expect(LineLogHandler.quoted("two\nlines \"q\"") == "\"two\\nlines \\\"q\\\"\"")
    }

    @Test("the Prometheus exposition shows metrics made through swift-metrics")
    func exposition() {
        MetricsSetup.bootstrap()
        MetricsSetup.bootstrap()  // a second call must not trap
        Counter(label: "service_support_test_total", dimensions: [("kind", "unit")]).increment(by: 3)
        let text = String(decoding: MetricsSetup.exposition(), as: UTF8.self)
        #expect(text.contains("# TYPE service_support_test_total counter"))
        #expect(text.contains("service_support_test_total{kind=\"unit\"} 3"))
    }

    @Test("start-up lines match INTERFACE.md for the defaults")
    func startupLines() {
        #expect(
            StartupMessages.expiryWorkerStarted(intervalSeconds: 30)
                == "✅ Hold expiration worker started (runs every 30s)"
        )
        #expect(StartupMessages.holdTTL(seconds: 300) == "Hold TTL: 300 seconds (5 minutes)")
        #expect(StartupMessages.holdTTL(seconds: 60) == "Hold TTL: 60 seconds (1 minute)")
        #expect(StartupMessages.holdTTL(seconds: 90) == "Hold TTL: 90 seconds (1.5 minutes)")
        #expect(StartupMessages.facadeRunning(port: 3005) == "Inventory service running on port 3005")
    }
}
