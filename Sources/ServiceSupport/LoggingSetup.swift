import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// swift-log, one line per event on standard error:
/// `2026-01-01T12:05:00.123Z info inventory-rpc: hold created hold.id=h_1 seat.count=2`.
public enum LoggingSetup {
    private static let bootstrapped = Mutex(false)

    /// Sends every `Logger` to a ``LineLogHandler`` at `level`. Once per process; later calls do nothing.
    public static func bootstrap(level: Logger.Level) {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        LoggingSystem.bootstrap(
            { label, provider in LineLogHandler(label: label, level: level, metadataProvider: provider) },
            metadataProvider: nil
        )
    }
}

/// Writes each event as one line: UTC timestamp, level, label, message, then `key=value` metadata
/// (sorted; values with spaces or quotes are quoted). A whole line goes out in one write, so lines
/// from several threads never interleave.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: @Sendable (String) -> Void

    public init(
        label: String,
        level: Logger.Level,
        metadataProvider: Logger.MetadataProvider? = nil,
        output: @escaping @Sendable (String) -> Void = LineLogHandler.writeToStandardError
    ) {
        self.label = label
        self.logLevel = level
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        if let error = event.error { merged["error"] = "\(error)" }
        output(
            Self.format(
                timestamp: Self.timestamp(),
                level: event.level,
                label: label,
                message: "\(event.message)",
                metadata: merged
            )
        )
    }

    static func format(
        timestamp: String,
        level: Logger.Level,
        label: String,
        message: String,
        metadata: Logger.Metadata
    ) -> String {
        var line = "\(timestamp) \(level) \(label): \(message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(quoted("\(metadata[key]!)"))"
        }
        return line
    }

    static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }
        guard needsQuotes else { return value }
        var escaped = ""
        for character in value {
            switch character {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            default: escaped.append(character)
            }
        }
        return "\"\(escaped)\""
    }

    /// Now in UTC with milliseconds, e.g. `2026-01-01T12:05:00.123Z`, without Foundation's formatters.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let milliseconds = Int32(now.tv_nsec / 1_000_000)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(milliseconds, 3))Z"
    }

    public static let writeToStandardError: @Sendable (String) -> Void = { line in
        StandardStreams.write(line + "\n", to: 2)
    }
}
