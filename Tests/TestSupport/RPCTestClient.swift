import AMQPClient
import Contracts
import Foundation
import Logging
import Synchronization

/// A reply as it arrived: the AMQP properties, the body, and when the request went out and the reply came.
public struct RPCAnswer: Sendable {
    public var properties: AMQPProperties
    public var body: [UInt8]
    public var sent: ContinuousClock.Instant
    public var replied: ContinuousClock.Instant

    public func decode<T: Codable & Sendable>(_ type: T.Type) throws -> RPCReply<T> {
        try ContractJSON.decode(RPCReply<T>.self, from: body)
    }

    /// The error code, or nil for an `ok` reply.
    public var errorCode: ErrorCode? { error?.code }

    public var error: ErrorBody? {
        guard case .error(let error) = try? decode(JSONValue.self) else { return nil }
        return error
    }

    public var isReplayed: Bool { properties.headers["x-idempotent-replayed"] == .bool(true) }
}

public struct RPCTimeout: Error, CustomStringConvertible {
    public var correlationID: String
    public var description: String { "no reply to \(correlationID) in time" }
}

/// The tests' RPC client for `inventory.rpc` over direct reply-to: many calls in flight on one connection.
///
/// One dedicated thread owns the AMQP connection; callers hand it messages through a queue and an
/// `EventFD`, and await their reply by correlation id.
public final class RPCTestClient: Sendable {
    private struct Outgoing: Sendable {
        var exchange: String
        var routingKey: String
        var body: [UInt8]
        var properties: AMQPProperties
        var timeout: Duration
        var continuation: CheckedContinuation<RPCAnswer, any Error>?
    }

    private struct Waiting {
        var continuation: CheckedContinuation<RPCAnswer, any Error>
        var sent: ContinuousClock.Instant
        var deadline: ContinuousClock.Instant
    }

    private let outbox = Mutex<[Outgoing]>([])
    private let wakeup: EventFD
    private let stopped = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Connects to the broker at `url`. With `declaresExchange`, declares `inventory.rpc` as the core does
    /// (a publish to a missing exchange would close the channel: for tests that may call before the core
    /// is up).
    public init(
        url: String,
        connectionName: String? = nil,
        declaresExchange: Bool = false,
        logger: Logger = fixtureLogger
    ) throws {
        wakeup = try EventFD()
        let setUp: @Sendable (AMQPConnection) throws -> Void = { connection in
            if declaresExchange {
                try connection.declareExchange(RPCOperation.exchange, type: .direct, durable: true)
            }
            try connection.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
        }
        try startConnectionThread(url, connectionName, logger, finished, setUp: setUp) { [self] connection in
            loop(connection)
        }
    }

    /// Publishes a request to `inventory.rpc` and awaits its reply.
    public func call(
        _ operation: RPCOperation,
        body: [UInt8],
        headers: [String: AMQPFieldValue] = [:],
        correlationID: String = UUID().uuidString,
        timeout: Duration = .seconds(30)
    ) async throws -> RPCAnswer {
        let properties = AMQPProperties(
            contentType: "application/json",
            correlationID: correlationID,
            replyTo: "amq.rabbitmq.reply-to",
            headers: headers
        )
        return try await withCheckedThrowingContinuation { continuation in
            enqueue(
                Outgoing(
                    exchange: RPCOperation.exchange,
                    routingKey: operation.routingKey,
                    body: body,
                    properties: properties,
                    timeout: timeout,
                    continuation: continuation
                )
            )
        }
    }

    public func call<T: Encodable>(
        _ operation: RPCOperation,
        _ request: T,
        headers: [String: AMQPFieldValue] = [:],
        timeout: Duration = .seconds(30)
    ) async throws -> RPCAnswer {
        try await call(operation, body: try ContractJSON.encode(request), headers: headers, timeout: timeout)
    }

    /// Publishes without waiting for anything (for requests that must get no reply).
    public func send(
        exchange: String = RPCOperation.exchange,
        routingKey: String,
        body: [UInt8],
        properties: AMQPProperties
    ) {
        enqueue(
            Outgoing(
                exchange: exchange,
                routingKey: routingKey,
                body: body,
                properties: properties,
                timeout: .zero,
                continuation: nil
            )
        )
    }

    /// Closes the connection; calls still waiting fail with `CancellationError`.
    public func close() {
        stopped.withLock { $0 = true }
        wakeup.signal()
        finished.wait()
    }

    private func enqueue(_ outgoing: Outgoing) {
        outbox.withLock { $0.append(outgoing) }
        wakeup.signal()
    }

    private func loop(_ connection: AMQPConnection) {
        var waiting: [String: Waiting] = [:]
        func failAll(_ error: any Error) {
            for (_, entry) in waiting { entry.continuation.resume(throwing: error) }
            waiting = [:]
            for outgoing in outbox.withLock({ $0.take() }) {
                outgoing.continuation?.resume(throwing: error)
            }
        }
        while true {
            if stopped.withLock({ $0 }) {
                failAll(CancellationError())
                return
            }
            do {
                let (readable, woken) = try connection.waitForInput(wakeup: wakeup, timeout: .milliseconds(100))
                if woken {
                    wakeup.drain()
                    for outgoing in outbox.withLock({ $0.take() }) {
                        let sent = ContinuousClock.now
                        try connection.publish(
                            exchange: outgoing.exchange,
                            routingKey: outgoing.routingKey,
                            body: outgoing.body,
                            properties: outgoing.properties
                        )
                        if let continuation = outgoing.continuation, let id = outgoing.properties.correlationID {
                            waiting[id] = Waiting(
                                continuation: continuation,
                                sent: sent,
                                deadline: sent + outgoing.timeout
                            )
                        }
                    }
                }
                if readable {
                    while let event = try connection.nextEvent(timeout: .zero) {
                        guard case .delivery(let message) = event, let id = message.properties.correlationID,
                            let entry = waiting.removeValue(forKey: id)
                        else { continue }
                        entry.continuation.resume(
                            returning: RPCAnswer(
                                properties: message.properties,
                                body: message.body,
                                sent: entry.sent,
                                replied: .now
                            )
                        )
                    }
                }
                let now = ContinuousClock.now
                for (id, entry) in waiting where entry.deadline <= now {
                    waiting[id] = nil
                    entry.continuation.resume(throwing: RPCTimeout(correlationID: id))
                }
            } catch {
                failAll(error)
                stopped.withLock { $0 = true }
                return
            }
        }
    }
}

extension Array {
    /// The elements, leaving the array empty.
    fileprivate mutating func take() -> [Element] {
        defer { self = [] }
        return self
    }
}

/// Collects every event published to `inventory.events`, through an exclusive queue bound to `#`, with
/// the time each first arrived.
public final class EventRecorder: Sendable {
    private let events = Mutex<[InventoryEvent]>([])
    private let raw = Mutex<[AMQPMessage]>([])
    private let receipts = Mutex<[String: ContinuousClock.Instant]>([:])
    private let stopped = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)

    public init(url: String, connectionName: String? = nil, logger: Logger = fixtureLogger) throws {
        let setUp: @Sendable (AMQPConnection) throws -> Void = { connection in
            try connection.declareExchange(EventType.exchange, type: .topic, durable: true)
            let queue = try connection.declareQueue("", durable: false, exclusive: true, autoDelete: true)
            try connection.bindQueue(queue, exchange: EventType.exchange, routingKey: "#")
            try connection.consume(queue: queue, noAck: true)
        }
        try startConnectionThread(url, connectionName, logger, finished, setUp: setUp) { [self] connection in
            while !stopped.withLock({ $0 }) {
                let next: AMQPEvent?
                do { next = try connection.nextEvent(timeout: .milliseconds(100)) } catch { break }
                guard case .delivery(let message)? = next else { continue }
                let now = ContinuousClock.now
                raw.withLock { $0.append(message) }
                if let decoded = try? ContractJSON.decode(InventoryEvent.self, from: message.body) {
                    receipts.withLock { $0[decoded.eventId] = $0[decoded.eventId] ?? now }
                    events.withLock { $0.append(decoded) }
                }
            }
        }
    }

    public var all: [InventoryEvent] { events.withLock { $0 } }
    public var messages: [AMQPMessage] { raw.withLock { $0 } }

    /// Events de-duplicated by `eventId`, in arrival order of their first copy.
    public var unique: [InventoryEvent] {
        var seen: Set<String> = []
        return all.filter { seen.insert($0.eventId).inserted }
    }

    /// When the first copy of event `eventId` arrived here, if it did.
    public func receipt(of eventId: String) -> ContinuousClock.Instant? { receipts.withLock { $0[eventId] } }

    /// Waits (bounded poll) until `predicate` holds for the unique events; returns whether it did.
    public func wait(
        timeout: Duration = .seconds(15),
        until predicate: ([InventoryEvent]) -> Bool
    ) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(unique) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return predicate(unique)
    }

    public func close() {
        stopped.withLock { $0 = true }
        finished.wait()
    }
}

/// Opens a connection to `url` on a thread of its own, sets it up, and hands it to `run` there; returns
/// once the set-up is done, or throws what failed. The thread closes the connection when `run` returns,
/// then signals `finished` (as it does when the start fails).
private func startConnectionThread(
    _ url: String,
    _ connectionName: String?,
    _ logger: Logger,
    _ finished: DispatchSemaphore,
    setUp: @escaping @Sendable (AMQPConnection) throws -> Void,
    run: @escaping @Sendable (AMQPConnection) -> Void
) throws {
    var configuration = try AMQPConfiguration(url: url)
    if let connectionName { configuration.connectionName = connectionName }
    let ready = DispatchSemaphore(value: 0)
    let startError = Mutex<(any Error)?>(nil)
    let thread = Thread { [configuration] in
        let connection: AMQPConnection
        do {
            connection = try AMQPConnection(configuration: configuration, logger: logger)
            try setUp(connection)
        } catch {
            startError.withLock { $0 = error }
            ready.signal()
            finished.signal()
            return
        }
        ready.signal()
        run(connection)
        connection.close()
        finished.signal()
    }
    thread.stackSize = 1 << 20
    thread.start()
    ready.wait()
    if let error = startError.withLock({ $0 }) { throw error }
}
