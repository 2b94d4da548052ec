import Contracts
import Foundation
import Logging
import Synchronization

/// The contended workload of a fault run: `amqpClients + httpClients` simulated users, each on its own
/// thread and connection, one request at a time, over a small seat map that moves on to a fresh showtime
/// every `showtimePeriod` (purchases are final, so one map would sell out and stop contending).
///
/// Every logical hold carries an idempotency key and is retried with that key until a definitive answer
/// (success, or an error that is not "try again"); then the user releases, purchases, or abandons the hold
/// to expiry. A few first attempts are sent and the connection dropped at once, before the reply.
public struct WorkloadConfiguration: Sendable {
    public var amqpURL: String
    public var facadeHost: String?
    public var facadePort: Int
    public var amqpClients: Int
    public var httpClients: Int
    public var duration: Duration
    public var showtimePrefix: String
    public var showtimeCount: Int
    public var seatsPerShowtime: Int
    public var showtimePeriod: Duration
    public var maxSeatsPerHold: Int
    public var requestTimeout: Duration
    /// How long a logical operation is retried before the client gives up on it (recorded as unresolved).
    public var retryBudget: Duration
    public var disconnectRate: Double
    public var seed: UInt64
    public var historyPath: String
    /// The bearer token of an HTTP client's user (`u-<name>`), for a facade with `AUTH_MODE=jwt`; nil
    /// sends none. It must allow purchase (`inventory:purchase`): the clients purchase their own holds.
    public var httpToken: (@Sendable (String) throws -> String)?

    public init(
        amqpURL: String,
        facadeHost: String?,
        facadePort: Int,
        amqpClients: Int,
        httpClients: Int,
        duration: Duration,
        showtimePrefix: String,
        showtimeCount: Int,
        seatsPerShowtime: Int,
        showtimePeriod: Duration,
        maxSeatsPerHold: Int = 3,
        requestTimeout: Duration = .seconds(3),
        retryBudget: Duration = .seconds(90),
        disconnectRate: Double = 0.05,
        seed: UInt64,
        historyPath: String
    ) {
        self.amqpURL = amqpURL
        self.facadeHost = facadeHost
        self.facadePort = facadePort
        self.amqpClients = amqpClients
        self.httpClients = httpClients
        self.duration = duration
        self.showtimePrefix = showtimePrefix
        self.showtimeCount = showtimeCount
        self.seatsPerShowtime = seatsPerShowtime
        self.showtimePeriod = showtimePeriod
        self.maxSeatsPerHold = maxSeatsPerHold
        self.requestTimeout = requestTimeout
        self.retryBudget = retryBudget
        self.disconnectRate = disconnectRate
        self.seed = seed
        self.historyPath = historyPath
    }

    public func showtimeID(_ index: Int) -> String { "\(showtimePrefix)-\(index)" }
    public func seatID(_ index: Int) -> String { "s\(index)" }
}

/// SplitMix64: small, seedable, good enough to make a run's choices reproducible from `--seed`.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public struct WorkloadSummary: Codable, Sendable {
    public var logicalHolds = 0
    public var holdsWon = 0
    public var unresolved = 0
    public var attempts = 0
}

public enum Workload {
    /// Runs every client to the end of `duration` (finishing the logical operation each has started) and
    /// returns the totals; the details are in the history file.
    public static func run(_ configuration: WorkloadConfiguration, logger: Logger) throws -> WorkloadSummary {
        let history = try JSONLinesWriter(path: configuration.historyPath)
        defer { history.close() }
        let start = ContinuousClock.now
        let total = Mutex(WorkloadSummary())
        let group = DispatchGroup()
        let clients = configuration.amqpClients + (configuration.facadeHost == nil ? 0 : configuration.httpClients)
        for index in 0..<clients {
            let isHTTP = index >= configuration.amqpClients
            let name = isHTTP ? "h\(index - configuration.amqpClients)" : "a\(index)"
            let transport: any ServiceTransport
            if isHTTP, let host = configuration.facadeHost {
                transport = HTTPTransport(
                    host: host,
                    port: configuration.facadePort,
                    token: try configuration.httpToken?("u-\(name)")
                )
            } else {
                transport = try AMQPTransport(url: configuration.amqpURL, clientName: name, logger: logger)
            }
            group.enter()
            let box = UncheckedTransport(transport)
            let thread = Thread {
                var client = Client(
                    name: name,
                    transport: box.transport,
                    configuration: configuration,
                    start: start,
                    history: history,
                    generator: SeededGenerator(seed: configuration.seed &* 1_000_003 &+ UInt64(index))
                )
                let summary = client.run()
                box.transport.close()
                total.withLock {
                    $0.logicalHolds += summary.logicalHolds
                    $0.holdsWon += summary.holdsWon
                    $0.unresolved += summary.unresolved
                    $0.attempts += summary.attempts
                }
                group.leave()
            }
            thread.name = "faults-client-\(name)"
            thread.start()
        }
        group.wait()
        return total.withLock { $0 }
    }
}

/// Hands a transport to the one thread that will own it from then on.
private final class UncheckedTransport: @unchecked Sendable {
    let transport: any ServiceTransport
    init(_ transport: any ServiceTransport) { self.transport = transport }
}

private struct Client {
    let name: String
    let transport: any ServiceTransport
    let configuration: WorkloadConfiguration
    let start: ContinuousClock.Instant
    let history: JSONLinesWriter
    var generator: SeededGenerator
    var summary = WorkloadSummary()
    let encoder = ContractJSON.encoder()

    var userID: String { "u-\(name)" }

    mutating func run() -> WorkloadSummary {
        var sequence = 0
        while ContinuousClock.now - start < configuration.duration {
            sequence += 1
            let (showtime, seats) = pickSeats()
            let key = "\(name)-\(sequence)"
            let request = HoldRequest(showtimeId: showtime, seatIds: seats, userId: userID, idempotencyKey: key)
            summary.logicalHolds += 1
            guard let outcome = untilDefinitive(.hold, request, showtime: showtime, seats: seats, key: key) else {
                summary.unresolved += 1
                continue
            }
            guard case .hold(let hold) = outcome, hold.status == .active else {
                pause(milliseconds: 20...200)  // a user told "unavailable" picks other seats, not at once
                continue
            }
            summary.holdsWon += 1
            let choice = Double.random(in: 0..<1, using: &generator)
            pause(milliseconds: 0...1_500)
            if choice < 0.35 {
                let release = ReleaseRequest(holdId: hold.holdId, userId: userID)
                if untilDefinitive(.release, release, showtime: showtime, seats: seats, holdID: hold.holdId) == nil {
                    summary.unresolved += 1
                }
            } else if choice < 0.7 {
                let orderID = "o-\(key)"
                let purchase = PurchaseRequest(holdId: hold.holdId, orderId: orderID, userId: userID)
                if untilDefinitive(
                    .purchase,
                    purchase,
                    showtime: showtime,
                    seats: seats,
                    holdID: hold.holdId,
                    orderID: orderID
                ) == nil {
                    summary.unresolved += 1
                }
            }  // else: abandoned, left to expire
        }
        return summary
    }

    mutating func pickSeats() -> (String, [String]) {
        let elapsed = ContinuousClock.now - start
        let index = Int(elapsed / configuration.showtimePeriod)
        let current = min(configuration.showtimeCount - 1, index + (Bool.random(using: &generator) ? 1 : 0))
        let count = Int.random(in: 1...max(1, configuration.maxSeatsPerHold), using: &generator)
        let first = Int.random(in: 1...(configuration.seatsPerShowtime - count + 1), using: &generator)
        return (configuration.showtimeID(max(0, current)), (first..<first + count).map(configuration.seatID))
    }

    mutating func pause(milliseconds range: ClosedRange<Int>) {
        let ms = Int.random(in: range, using: &generator)
        if ms > 0 { Thread.sleep(forTimeInterval: Double(ms) / 1000) }
    }

    static let retryableCodes: Set<String> = [
        ErrorCode.idempotencyKeyInUse.rawValue, ErrorCode.serviceUnavailable.rawValue,
        ErrorCode.upstreamTimeout.rawValue, ErrorCode.internalError.rawValue,
    ]

    /// Sends the request until the answer is definitive; nil when the retry budget ran out first.
    mutating func untilDefinitive<Request: Encodable>(
        _ operation: RPCOperation,
        _ request: Request,
        showtime: String,
        seats: [String],
        key: String? = nil,
        holdID: String? = nil,
        orderID: String? = nil
    ) -> CallOutcome? {
        let body = (try? Array(encoder.encode(request))) ?? []
        let began = ContinuousClock.now
        var attempt = 0
        var backoff = 50
        while ContinuousClock.now - began < configuration.retryBudget {
            attempt += 1
            let disconnect =
                operation == .hold && attempt == 1
                && Double.random(in: 0..<1, using: &generator) < configuration.disconnectRate
            let invoked = epochMilliseconds()
            let outcome = transport.call(
                operation,
                body: body,
                timeout: configuration.requestTimeout,
                disconnectAfterSend: disconnect
            )
            let completed = epochMilliseconds()
            summary.attempts += 1
            var record = Attempt(
                client: name,
                transport: transport.name,
                op: operation == .hold ? "hold" : operation == .release ? "release" : "purchase",
                userId: userID,
                showtimeId: showtime,
                seatIds: seats,
                key: key,
                holdId: holdID,
                orderId: orderID,
                attempt: attempt,
                invokeMs: invoked,
                completeMs: completed,
                result: outcome.result
            )
            switch outcome {
            case .hold(let hold):
                record.holdId = hold.holdId
                record.status = hold.status.rawValue
                record.expiresAtMs = Int64((hold.expiresAt.timeIntervalSince1970 * 1000).rounded())
            case .error(let code): record.code = code
            case .transport(let message): record.code = String(message.prefix(120))
            case .timeout, .disconnected: break
            }
            record.deadlineMs = Self.deadline(of: outcome, transport: transport, completed: completed)
            history.write(record)
            switch outcome {
            case .hold: return outcome
            case .error(let code) where !Self.retryableCodes.contains(code): return outcome
            case .disconnected: continue  // retry at once, as a user whose page reloaded
            default:
                Thread.sleep(forTimeInterval: Double(backoff) / 1000)
                backoff = min(backoff * 2, 1_000)
            }
        }
        return nil
    }

    /// The attempt's deadline as the core saw it, or nil when the client cannot know it: over AMQP the
    /// `x-deadline` sent; over HTTP the facade sets its own (on receipt + `RPC_TIMEOUT_MS`), known only to be
    /// no later than its 504 `UPSTREAM_TIMEOUT` answer.
    static func deadline(of outcome: CallOutcome, transport: any ServiceTransport, completed: Int64) -> Int64? {
        if let amqp = transport as? AMQPTransport { return amqp.lastDeadlineMs }
        if case .error(let code) = outcome, code == ErrorCode.upstreamTimeout.rawValue { return completed }
        return nil
    }

}
