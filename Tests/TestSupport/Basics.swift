import Foundation
import Logging
import Synchronization

/// The one error type of the test fixtures: what went wrong, in words.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A random id for names in the shared services (base 36, up to 13 characters).
public func uniqueID() -> String {
    String(UInt64.random(in: 0...UInt64.max), radix: 36)
}

/// A name no other test process, call or earlier run uses: `prefix-<pid>-<n>-<random>` (with `separator`
/// `"_"`, safe as an unquoted SQL identifier when `prefix` is).
public func uniqueName(_ prefix: String, separator: String = "-") -> String {
    let count = nameCounter.add(1, ordering: .relaxed).newValue
    return [prefix, "\(getpid())", "\(count)", "\(UInt32.random(in: 0...UInt32.max))"].joined(separator: separator)
}

private let nameCounter = Atomic<Int>(0)

/// A logger for a test target: to standard error at `level`, or at the level the environment variable
/// `variable` names (`trace` ... `critical`), for a closer look at one run.
public func makeTestLogger(_ label: String, level: Logger.Level, variable: String? = nil) -> Logger {
    var logger = Logger(label: label) { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .trace
        return handler
    }
    let chosen = variable.flatMap { ProcessInfo.processInfo.environment[$0] }.flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = chosen ?? level
    return logger
}

/// The fixtures' own logger, and their clients' by default: errors only (`TEST_SUPPORT_LOG` says another
/// level).
public let fixtureLogger = makeTestLogger("test-support", level: .error, variable: "TEST_SUPPORT_LOG")

/// Keeps every log record, to check what a component logs and that it never logs a secret.
public final class LogRecorder: Sendable {
    public struct Record: Sendable {
        public var level: Logger.Level
        public var message: String
        /// The logger's and the record's metadata together, values as text.
        public var metadata: [String: String]
    }

    private let records = Mutex<[Record]>([])

    public init() {}

    public var logger: Logger { logger(label: "recording") }

    public func logger(label: String) -> Logger {
        Logger(label: label) { _ in RecordingLogHandler(recorder: self) }
    }

    public var all: [Record] { records.withLock { $0 } }

    func append(_ record: Record) { records.withLock { $0.append(record) } }
}

struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }.mapValues { "\($0)" }
        recorder.append(.init(level: event.level, message: "\(event.message)", metadata: all))
    }
}
