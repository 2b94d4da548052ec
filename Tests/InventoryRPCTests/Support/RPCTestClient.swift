import AMQPClient
import Contracts
import Foundation
import Logging
import Synchronization

/// A reply as it arrived: the AMQP properties and the body.
struct RPCAnswer: Sendable {
    var properties: AMQPProperties
    var body: [UInt8]

    func decode<T: Codable & Sendable>(_ type: T.Type) throws -> RPCReply<T> {
        try ContractJSON.decode(RPCReply<T>.self, from: body)
    }

    /// The error code, or nil for an `ok` reply.
    var errorCode: ErrorCode? {
        guard case .error(let error) = try? decode(JSONValue.self) else { return nil }
        return error.code
    }

    var error: ErrorBody? {
        guard case .error(let error) = try? decode(JSONValue.self) else { return nil }
        return error
    }

    var isReplayed: Bool { properties.headers["x-idempotent-replayed"] == .bool(true) }
}

struct RPCTimeout: Error, CustomStringConvertible {
    var correlationID: String
    var description: String { "no reply to \(correlationID) in time" }
}

/// A test RPC client over direct reply-to: many calls in flight on one connection.
///
/// One dedicated thread owns the AMQP connection; callers hand it messages through a queue and an
/// `EventFD`, and await their reply by correlation id.
final class RPCTestClient: Sendable {
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
        var deadline: ContinuousClock.Instant
    }

    private let outbox = Mutex<[Outgoing]>([])
    private let wakeup: EventFD
    private let stopped = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)
    private let failure = Mutex<(any Error)?>(nil)

    init(url: String) throws {
        wakeup = try EventFD()
        let ready = DispatchSemaphore(value: 0)
        let startError = Mutex<(any Error)?>(nil)
        let thread = Thread { [self] in
            let connection: AMQPConnection
            do {
                connection = try AMQPConnection(
                    configuration: try AMQPConfiguration(url: url),
                    logger: testLogger
                )
                try connection.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            } catch {
                startError.withLock { $0 = error }
                ready.signal()
                finished.signal()
                return
            }
            ready.signal()
            loop(connection)
            connection.close()
            finished.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
        ready.wait()
        if let error = startError.withLock({ $0 }) { throw error }
    }

    /// Publishes a request to `inventory.rpc` and awaits its reply.
    func call(
        _ operation: RPCOperation,
        body: [UInt8],
        headers: [String: AMQPFieldValue] = [:],
        correlationID: String = UUID().uuidString,
        messageID: String? = nil,
        timeout: Duration = .seconds(30)
    ) async throws -> RPCAnswer {
        let properties = AMQPProperties(
            contentType: "application/json",
            correlationID: correlationID,
            replyTo: "amq.rabbitmq.reply-to",
            messageID: messageID,
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

    func call<T: Encodable>(
        _ operation: RPCOperation,
        _ request: T,
        headers: [String: AMQPFieldValue] = [:],
        timeout: Duration = .seconds(30)
    ) async throws -> RPCAnswer {
        try await call(operation, body: try ContractJSON.encode(request), headers: headers, timeout: timeout)
    }

    /// Publishes without waiting for anything (for requests that must get no reply).
    func send(exchange: String = RPCOperation.exchange, routingKey: String, body: [UInt8], properties: AMQPProperties) {
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

    func close() {
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
            for outgoing in outbox.withLock({ queue in
                defer { queue = [] }
                return queue
            }) {
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
                    let batch = outbox.withLock { queue in
                        defer { queue = [] }
                        return queue
                    }
                    for outgoing in batch {
                        try connection.publish(
                            exchange: outgoing.exchange,
                            routingKey: outgoing.routingKey,
                            body: outgoing.body,
                            properties: outgoing.properties
                        )
                        if let continuation = outgoing.continuation, let id = outgoing.properties.correlationID {
                            waiting[id] = Waiting(continuation: continuation, deadline: .now + outgoing.timeout)
                        }
                    }
                }
                if readable {
                    while let event = try connection.nextEvent(timeout: .zero) {
                        guard case .delivery(let message) = event, let id = message.properties.correlationID,
                            let entry = waiting.removeValue(forKey: id)
                        else { continue }
                        entry.continuation.resume(
                            returning: RPCAnswer(properties: message.properties, body: message.body)
                        )
                    }
                }
                let now = ContinuousClock.now
                for (id, entry) in waiting where entry.deadline <= now {
                    waiting[id] = nil
                    entry.continuation.resume(throwing: RPCTimeout(correlationID: id))
                }
            } catch {
                failure.withLock { $0 = error }
                failAll(error)
                stopped.withLock { $0 = true }
                return
            }
        }
    }
}

/// Collects every event published to `inventory.events`, through an exclusive queue bound to `#`.
final class EventCollector: Sendable {
    private let events = Mutex<[InventoryEvent]>([])
    private let raw = Mutex<[AMQPMessage]>([])
    private let stopped = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)

    init(url: String) throws {
        let ready = DispatchSemaphore(value: 0)
        let startError = Mutex<(any Error)?>(nil)
        let thread = Thread { [self] in
            let connection: AMQPConnection
            do {
                connection = try AMQPConnection(
                    configuration: try AMQPConfiguration(url: url),
                    logger: testLogger
                )
                try connection.declareExchange(EventType.exchange, type: .topic, durable: true)
                let queue = try connection.declareQueue("", durable: false, exclusive: true, autoDelete: true)
                try connection.bindQueue(queue, exchange: EventType.exchange, routingKey: "#")
                try connection.consume(queue: queue, noAck: true)
            } catch {
                startError.withLock { $0 = error }
                ready.signal()
                finished.signal()
                return
            }
            ready.signal()
            while !stopped.withLock({ $0 }) {
                let next: AMQPEvent?
                do { next = try connection.nextEvent(timeout: .milliseconds(100)) } catch { break }
                guard let event = next else { continue }
                if case .delivery(let message) = event {
                    raw.withLock { $0.append(message) }
                    if let decoded = try? ContractJSON.decode(InventoryEvent.self, from: message.body) {
                        events.withLock { $0.append(decoded) }
                    }
                }
            }
            connection.close()
            finished.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
        ready.wait()
        if let error = startError.withLock({ $0 }) { throw error }
    }

    var all: [InventoryEvent] { events.withLock { $0 } }
    var messages: [AMQPMessage] { raw.withLock { $0 } }

    /// Events de-duplicated by `eventId`, in arrival order of their first copy.
    var unique: [InventoryEvent] {
        var seen: Set<String> = []
        return all.filter { seen.insert($0.eventId).inserted }
    }

    /// Waits (bounded poll) until `predicate` holds for the unique events; returns whether it did.
    func wait(timeout: Duration = .seconds(15), until predicate: ([InventoryEvent]) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(unique) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return predicate(unique)
    }

    func close() {
        stopped.withLock { $0 = true }
        finished.wait()
    }
}
