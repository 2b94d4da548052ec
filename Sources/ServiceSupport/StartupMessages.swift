/// The start-up lines of INTERFACE.md ("Processes"), word for word, from the configuration.
public enum StartupMessages {
    public static let databaseLoaded = "✅ Inventory Service - DATABASE_URL loaded"
    public static let redisConnected = "✅ Inventory Service - Redis connected"
    public static let rabbitMQConnected = "✅ Inventory Service - RabbitMQ connected"

    /// "✅ Hold expiration worker started (runs every 30s)"
    public static func expiryWorkerStarted(intervalSeconds: Int) -> String {
        "✅ Hold expiration worker started (runs every \(intervalSeconds)s)"
    }

    /// "Hold TTL: 300 seconds (5 minutes)"; 90 gives "(1.5 minutes)", 60 "(1 minute)".
    public static func holdTTL(seconds: Int) -> String {
        let minutes: String
        if seconds % 60 == 0 {
            minutes = "\(seconds / 60)"
        } else {
            let tenths = (seconds * 10 + 30) / 60
            minutes = tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
        }
        return "Hold TTL: \(seconds) seconds (\(minutes) \(minutes == "1" ? "minute" : "minutes"))"
    }

    /// "Inventory service running on port 3005"
    public static func facadeRunning(port: Int) -> String {
        "Inventory service running on port \(port)"
    }
}
