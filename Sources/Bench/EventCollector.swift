import AMQPClient
import Contracts
import Foundation
import Logging
import Synchronization

/// An event as the bench received it, in arrival order.
public struct ReceivedEvent: Sendable, Hashable {
    public var eventID: String
    public var type: String
    public var holdID: String
    public var showtimeID: String
    public var seatIDs: [String]
    /// Arrival order (0, 1, 2, ...) across the whole run, duplicates included.
    public var sequence: Int
    /// Each named seat's version after the change (rule 8); nil when the event carried none (a core
    /// older than per-seat versions): the verifier counts that as a `seat-versions` violation.
    public var seatVersions: [String: Int64]?
    /// `hold.created`'s `expiresAt`, in microseconds since the epoch: from then on the seats are available.
    public var expiresAt: Int64?

    public init(
        eventID: String,
        type: String,
        holdID: String,
        showtimeID: String,
        seatIDs: [String],
        sequence: Int,
        seatVersions: [String: Int64]? = nil,
        expiresAt: Int64? = nil
    ) {
        self.eventID = eventID
        self.type = type
        self.holdID = holdID
        self.showtimeID = showtimeID
        self.seatIDs = seatIDs
        self.sequence = sequence
        self.seatVersions = seatVersions
        self.expiresAt = expiresAt
    }

    /// The body of an `inventory.events` message: the contract's event, or one without `seatVersions`
    /// (what a core before rule 8 published, kept so the verifier can say what is wrong with it rather
    /// than only that it does not decode). Nil for anything else. Also returns `occurredAt`.
    public static func decode(_ body: [UInt8], sequence: Int) -> (event: ReceivedEvent, occurredAt: Date)? {
        guard let decoded = try? ContractJSON.decoder().decode(Body.self, from: Data(body)) else { return nil }
        let event = ReceivedEvent(
            eventID: decoded.eventId,
            type: decoded.type.rawValue,
            holdID: decoded.holdId,
            showtimeID: decoded.showtimeId,
            seatIDs: decoded.seatIds,
            sequence: sequence,
            seatVersions: decoded.seatVersions,
            expiresAt: decoded.expiresAt.map { Int64(($0.timeIntervalSince1970 * 1_000_000).rounded()) }
        )
        return (event, decoded.occurredAt)
    }

    private struct Body: Decodable {
        var eventId: String
        var type: EventType
        var occurredAt: Date
        var showtimeId: String
        var holdId: String
        var seatIds: [String]
        var seatVersions: [String: Int64]?
        var expiresAt: Date?
    }
}

/// Consumes `inventory.events` with its own exclusive queue bound with `#`, on its own thread, from
/// before the load starts until `stop()`. Keeps the events of the showtimes whose id starts with
/// `showtimePrefix`; bodies that do not decode are kept as problems for the verifier.
public final class EventCollector: Sendable {
    private struct State {
        var events: [ReceivedEvent] = []
        var undecodable: [String] = []
        var failure: String?
        var received = 0
    }

    private let state = Mutex(State())
    private let stopping = StopFlag()
    private let ready = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// Starts the thread and returns once the queue is bound (so no event of the run can be missed).
    public init(configuration: AMQPConfiguration, showtimePrefix: String, logger: Logger) throws {
        let thread = Thread { [self] in
            consume(configuration: configuration, prefix: showtimePrefix, logger: logger)
            finished.signal()
        }
        thread.name = "bench-events"
        thread.start()
        ready.wait()
        if let failure = state.withLock({ $0.failure }) {
            throw BenchError("cannot consume \(EventType.exchange): \(failure)")
        }
    }

    private func consume(configuration: AMQPConfiguration, prefix: String, logger: Logger) {
        var signalled = false
        defer { if !signalled { ready.signal() } }
        do {
            var configuration = configuration
            configuration.connectionName = "inventory-bench-events"
            let connection = try AMQPConnection(configuration: configuration, logger: logger)
            defer { connection.close() }
            // The core declares it too; declaring the same exchange again is harmless.
            try connection.declareExchange(EventType.exchange, type: .topic, durable: true)
            let queue = try connection.declareQueue("", durable: false, exclusive: true, autoDelete: true)
            try connection.bindQueue(queue, exchange: EventType.exchange, routingKey: "#")
            try connection.consume(queue: queue, noAck: true)
            signalled = true
            ready.signal()
            while !stopping.isRaised {
                guard let event = try connection.nextEvent(timeout: .milliseconds(100)),
                    case .delivery(let message) = event
                else { continue }
                if let (decoded, _) = ReceivedEvent.decode(message.body, sequence: 0) {
                    guard decoded.showtimeID.hasPrefix(prefix) else { continue }
                    state.withLock { state in
                        var event = decoded
                        event.sequence = state.received
                        state.events.append(event)
                        state.received += 1
                    }
                } else {
                    let text = String(decoding: message.body.prefix(300), as: UTF8.self)
                    state.withLock { $0.undecodable.append("\(message.routingKey): \(text)") }
                }
            }
        } catch {
            state.withLock { $0.failure = "\(error)" }
        }
    }

    /// The events so far (a snapshot).
    public var events: [ReceivedEvent] { state.withLock { $0.events } }
    public var undecodable: [String] { state.withLock { $0.undecodable } }
    public var failure: String? { state.withLock { $0.failure } }

    public func stop() {
        stopping.raise()
        finished.wait()
        finished.signal()
    }
}
