import Foundation
import Synchronization

/// Wall-clock milliseconds since the epoch: the clock the harness's fault log (`date +%s%3N`) and the
/// database's `now()` also read, so client history, faults and hold rows can be compared on one axis.
public func epochMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// One request a client made, as the client saw it: one JSON line of `history.jsonl`.
///
/// `result` is `ok` (a success reply), `error` (an error reply, `code` says which), `timeout` (no reply in
/// time), `transport` (the connection failed) or `disconnected` (the client dropped its connection on
/// purpose right after sending, to retry with the same idempotency key).
public struct Attempt: Codable, Sendable, Hashable {
    public var client: String
    public var transport: String
    public var op: String
    public var userId: String
    public var showtimeId: String
    public var seatIds: [String]
    /// The idempotency key of a hold (one per logical hold, the same on every retry).
    public var key: String?
    /// For a hold: the `holdId` of the reply; for a release or purchase: the hold acted on.
    public var holdId: String?
    public var orderId: String?
    /// 1 for the first try of a logical operation, 2 for its first retry, ...
    public var attempt: Int
    public var invokeMs: Int64
    public var completeMs: Int64
    public var result: String
    public var code: String?
    /// The hold's status in a success reply.
    public var status: String?
    public var expiresAtMs: Int64?
    /// The attempt's deadline as the core saw it (Unix epoch ms), when the client knows it
    /// (`Workload.deadline(of:)`): the "committed after the caller's deadline" check reads it.
    public var deadlineMs: Int64?

    public init(
        client: String,
        transport: String,
        op: String,
        userId: String,
        showtimeId: String,
        seatIds: [String],
        key: String? = nil,
        holdId: String? = nil,
        orderId: String? = nil,
        attempt: Int,
        invokeMs: Int64,
        completeMs: Int64,
        result: String,
        code: String? = nil,
        status: String? = nil,
        expiresAtMs: Int64? = nil,
        deadlineMs: Int64? = nil
    ) {
        self.client = client
        self.transport = transport
        self.op = op
        self.userId = userId
        self.showtimeId = showtimeId
        self.seatIds = seatIds
        self.key = key
        self.holdId = holdId
        self.orderId = orderId
        self.attempt = attempt
        self.invokeMs = invokeMs
        self.completeMs = completeMs
        self.result = result
        self.code = code
        self.status = status
        self.expiresAtMs = expiresAtMs
        self.deadlineMs = deadlineMs
    }
}

/// Appends JSON lines to a file from several threads; each line is written whole, flushed at once so a
/// killed workload leaves every completed request on disk.
public final class JSONLinesWriter: Sendable {
    private let handle: Mutex<FileHandle>
    private let encoder: JSONEncoder

    public init(path: String) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw FaultSuiteError("cannot write \(path)")
        }
        handle.seekToEndOfFile()
        self.handle = Mutex(handle)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.encoder = encoder
    }

    public func write<T: Encodable>(_ value: T) {
        guard var line = try? encoder.encode(value) else { return }
        line.append(0x0A)
        handle.withLock { $0.write(line) }
    }

    public func close() { handle.withLock { try? $0.close() } }
}

/// Reads a JSON-lines file; lines that do not decode (a line cut by a kill) are skipped and counted.
public func readJSONLines<T: Decodable>(_ path: String, as: T.Type) throws -> (values: [T], skipped: Int) {
    guard let data = FileManager.default.contents(atPath: path) else { return ([], 0) }
    let decoder = JSONDecoder()
    var values: [T] = []
    var skipped = 0
    for line in data.split(separator: 0x0A) where !line.isEmpty {
        if let value = try? decoder.decode(T.self, from: Data(line)) { values.append(value) } else { skipped += 1 }
    }
    return (values, skipped)
}

public struct FaultSuiteError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
