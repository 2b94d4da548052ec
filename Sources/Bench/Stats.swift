import Foundation
import Histogram

/// Latencies (microseconds, HdrHistogram, 3 significant digits) and outcomes of one operation.
public struct OperationStats: Sendable {
    public var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    public var outcomes: [Outcome: Int] = [:]
    public var errorCodes: [String: Int] = [:]

    public init() {}

    public mutating func record(_ reply: BenchReply, microseconds: UInt64) {
        if reply.outcome != .timeout { _ = latency.record(Swift.min(microseconds, 120_000_000)) }
        outcomes[reply.outcome, default: 0] += 1
        if let code = reply.errorCode, reply.outcome != .won { errorCodes[code, default: 0] += 1 }
    }

    public mutating func merge(_ other: OperationStats) {
        latency.add(other.latency)
        for (key, value) in other.outcomes { outcomes[key, default: 0] += value }
        for (key, value) in other.errorCodes { errorCodes[key, default: 0] += value }
    }

    public var count: Int { outcomes.values.reduce(0, +) }
}

/// What one driver thread (or a whole run) measured.
public struct RunStats: Sendable {
    public var operations: [BenchOperation: OperationStats] = [:]
    /// Holds that were won (verified against the database afterwards).
    public var wonHolds: [WonHold] = []
    /// Requests still unanswered when the run gave up on them.
    public var unanswered = 0
    /// Transport failures (a connection lost and re-made).
    public var transportErrors: [String] = []

    public init() {}

    public mutating func record(_ operation: BenchOperation, _ reply: BenchReply, microseconds: UInt64) {
        operations[operation, default: OperationStats()].record(reply, microseconds: microseconds)
    }

    public mutating func merge(_ other: RunStats) {
        for (operation, stats) in other.operations { operations[operation, default: OperationStats()].merge(stats) }
        wonHolds += other.wonHolds
        unanswered += other.unanswered
        transportErrors += other.transportErrors
    }
}

public struct WonHold: Sendable, Hashable, Codable {
    public var holdID: String
    public var showtimeID: String
    public var seatIDs: [String]
    public var userID: String
}

/// The machine-readable report (`--json`), also the source of the text table.
public struct BenchReport: Codable, Sendable {
    public struct Row: Codable, Sendable {
        public var operation: String
        public var count: Int
        public var throughputPerSecond: Double
        public var p50Ms: Double
        public var p90Ms: Double
        public var p99Ms: Double
        public var p999Ms: Double
        public var maxMs: Double
        public var won: Int
        public var conflict: Int
        public var error: Int
        public var timeout: Int
        public var errorCodes: [String: Int]
    }

    public var mode: String
    public var shape: String
    public var inFlight: Int
    public var connections: Int
    public var durationSeconds: Double
    public var warmupSeconds: Double
    public var showtimes: Int
    public var seatsPerShowtime: Int
    public var seatsPerHold: String
    public var load: String
    public var operations: [Row]
    public var totalThroughputPerSecond: Double
    public var unanswered: Int
    public var transportErrors: Int
    public var verification: VerificationSummary?

    static func row(_ operation: String, _ stats: OperationStats, seconds: Double) -> Row {
        func ms(_ value: UInt64) -> Double { (Double(value) / 1000 * 1000).rounded() / 1000 }
        let h = stats.latency
        let empty = h.totalCount == 0
        return Row(
            operation: operation,
            count: stats.count,
            throughputPerSecond: (Double(stats.count) / seconds * 10).rounded() / 10,
            p50Ms: empty ? 0 : ms(h.valueAtPercentile(50)),
            p90Ms: empty ? 0 : ms(h.valueAtPercentile(90)),
            p99Ms: empty ? 0 : ms(h.valueAtPercentile(99)),
            p999Ms: empty ? 0 : ms(h.valueAtPercentile(99.9)),
            maxMs: empty ? 0 : ms(h.max),
            won: stats.outcomes[.won] ?? 0,
            conflict: stats.outcomes[.conflict] ?? 0,
            error: stats.outcomes[.error] ?? 0,
            timeout: stats.outcomes[.timeout] ?? 0,
            errorCodes: stats.errorCodes
        )
    }

    public func text() -> String {
        var lines: [String] = []
        lines.append(
            "inventory-bench \(mode) shape=\(shape) in-flight=\(inFlight) connections=\(connections) "
                + "duration=\(durationSeconds)s warmup=\(warmupSeconds)s showtimes=\(showtimes)x\(seatsPerShowtime) "
                + "seats/hold=\(seatsPerHold)"
        )
        lines.append("load: \(load)")
        let header = [
            "operation", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "won",
            "conflict", "error", "timeout",
        ]
        var table = [header]
        for row in operations {
            table.append([
                row.operation, "\(row.count)", String(format: "%.1f", row.throughputPerSecond),
                String(format: "%.2f", row.p50Ms), String(format: "%.2f", row.p90Ms), String(format: "%.2f", row.p99Ms),
                String(format: "%.2f", row.p999Ms), String(format: "%.2f", row.maxMs), "\(row.won)", "\(row.conflict)",
                "\(row.error)", "\(row.timeout)",
            ])
        }
        lines += formatTable(table)
        for row in operations where !row.errorCodes.isEmpty {
            let codes = row.errorCodes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.append("  \(row.operation) answers: \(codes)")
        }
        lines.append(
            String(
                format: "total: %.1f ops/s; unanswered at the end: %d; transport errors: %d",
                totalThroughputPerSecond,
                unanswered,
                transportErrors
            )
        )
        if let verification {
            lines.append(verification.text())
        }
        return lines.joined(separator: "\n")
    }
}

/// Right-aligned columns except the first.
func formatTable(_ rows: [[String]]) -> [String] {
    guard let first = rows.first else { return [] }
    var widths = Array(repeating: 0, count: first.count)
    for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
    return rows.map { row in
        row.enumerated().map { index, cell in
            let pad = String(repeating: " ", count: widths[index] - cell.count)
            return index == 0 ? cell + pad : pad + cell
        }.joined(separator: "  ")
    }
}

/// `uptime`'s load averages, to print beside every number (the machine is shared).
public func loadAverage() -> String {
    guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "unknown" }
    let parts = text.split(separator: " ").prefix(3)
    return "load average \(parts.joined(separator: " ")) (\(ProcessInfo.processInfo.activeProcessorCount) cores)"
}
