import Foundation
import Logging
import RedisClient
import TestSupport
import Testing

@Suite("Logs")
struct LoggingTests {
    @Test("A reconnect is logged at warning and info with the server in metadata, and never the password")
    func reconnectLogs() async throws {
        let recorder = LogRecorder()
        try await withPrivateServer(password: "log-secret") { server in
            let redis = try RedisConnection(url: server.url + "/1", logger: recorder.logger)
            try redis.command(["PING"])
            server.stop()
            _ = try? redis.command(["PING"])  // down: dropped, reconnect refused
            try server.start()
            try redis.command(["PING"])
        }
        let records = recorder.all
        let dropped = records.first { $0.level == .warning && $0.message.contains("dropped") }
        let failed = records.first { $0.level == .warning && $0.message.contains("reconnecting to redis failed") }
        let reconnected = records.first { $0.level == .info && $0.message.contains("reconnected") }
        #expect(dropped != nil)
        #expect(failed?.metadata["error"]?.contains("Connection refused") == true)
        #expect(reconnected?.metadata["redis.server"]?.hasPrefix("127.0.0.1:") == true)
        #expect(reconnected?.metadata["redis.db"] == "1")
        #expect(
            !records.contains { record in
                record.message.contains("log-secret") || record.metadata.values.contains { $0.contains("log-secret") }
            })
    }
}
