import AMQPClient
import Contracts
import Foundation
import InventoryRPCClient
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

/// The tests' RPC client for `inventory.rpc`: `InventoryRPCClient`'s `RPCClient` (direct reply-to, many
/// calls in flight on one connection, correlation and deadlines), answering in `RPCAnswer`s and throwing
/// `RPCTimeout`; and, for requests made to get no reply, `send`, a raw publish on a connection of its own.
///
/// Unlike the services' clients, a call may set its own `x-deadline` header (a late or malformed one, for
/// the core's hygiene tests); it is sent as given. Other failures of a call are thrown as `RPCFailure`
/// (`.stopped` as `CancellationError`).
public final class RPCTestClient: Sendable {
    private let client: RPCClient
    /// `send`'s connection (heartbeats off: nobody reads it between sends), with publisher confirms, so
    /// that what was sent is on its queue before `send` returns; and the failure of the last send, which
    /// the next call throws.
    private let publisher: Mutex<(connection: AMQPConnection?, failure: (any Error)?)>
    private let logger: Logger

    /// Connects to the broker at `url`. With `declaresExchange`, declares `inventory.rpc` as the core does
    /// (a publish to a missing exchange would close the channel: for tests that may call before the core
    /// is up). Calls made before the RPC connection is up wait for it.
    public init(
        url: String,
        connectionName: String? = nil,
        declaresExchange: Bool = false,
        logger: Logger = fixtureLogger
    ) throws {
        var amqp = try AMQPConfiguration(url: url)
        amqp.connectionName = connectionName
        var raw = amqp
        raw.heartbeat = .zero
        raw.connectionName = connectionName.map { "\($0) send" }
        let connection = try AMQPConnection(configuration: raw, logger: logger)
        do {
            if declaresExchange {
                try connection.declareExchange(RPCOperation.exchange, type: .direct, durable: true)
            }
            try connection.enablePublisherConfirms()
        } catch {
            connection.close()
            throw error
        }
        publisher = Mutex((connection, nil))
        var configuration = RPCClient.Configuration(
            amqp: amqp,
            whileDisconnected: .waitForConnection,
            name: connectionName ?? "rpc-test-client"
        )
        configuration.channel.declareExchange = declaresExchange ? RPCOperation.exchange : nil
        client = try RPCClient(configuration: configuration, logger: logger)
        self.logger = logger
        client.start()
    }

    /// Publishes a request to `inventory.rpc` and awaits its reply.
    public func call(
        _ operation: RPCOperation,
        body: [UInt8],
        headers: [String: AMQPFieldValue] = [:],
        correlationID: String? = nil,
        timeout: Duration = .seconds(30)
    ) async throws -> RPCAnswer {
        if let failure = publisher.withLock({ $0.failure.take() }) { throw failure }
        var headers = headers
        let deadline = headers.removeValue(forKey: ContractHeaders.deadline)
        var request = RPCRequest(
            operation,
            body: body,
            timeout: timeout,
            correlationID: correlationID ?? client.makeCorrelationID(),
            headers: headers
        )
        request.deadlineHeader = deadline
        let sent = ContinuousClock.now
        switch await client.call(request) {
        case .success(let response):
            return RPCAnswer(properties: response.properties, body: response.body, sent: sent, replied: .now)
        case .failure(.timedOut):
            throw RPCTimeout(correlationID: request.correlationID ?? "")
        case .failure(.stopped):
            throw CancellationError()
        case .failure(let failure):
            throw failure
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

    /// Publishes exactly these properties without waiting for a reply (for requests that must get none);
    /// returns once the broker has taken the message. A failure is logged and thrown by the next `call`.
    public func send(
        exchange: String = RPCOperation.exchange,
        routingKey: String,
        body: [UInt8],
        properties: AMQPProperties
    ) {
        publisher.withLock { state in
            do {
                guard let connection = state.connection else { throw CancellationError() }
                let tag = try connection.publish(
                    exchange: exchange,
                    routingKey: routingKey,
                    body: body,
                    properties: properties
                )
                try Self.awaitConfirm(tag, on: connection)
            } catch {
                logger.error("RPCTestClient.send failed", metadata: ["error": "\(error)"])
                if state.failure == nil { state.failure = error }
            }
        }
    }

    /// Closes both connections; calls still waiting fail with `CancellationError`.
    public func close() {
        client.stop(timeout: .seconds(10))
        publisher.withLock { state in
            state.connection?.close()
            state.connection = nil
        }
    }

    private static func awaitConfirm(_ tag: UInt64, on connection: AMQPConnection) throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            switch try connection.nextEvent(timeout: ContinuousClock.now.duration(to: deadline)) {
            case .ack(let confirmed, let multiple)? where confirmed == tag || (multiple && confirmed >= tag):
                return
            case .nack(let confirmed, let multiple)? where confirmed == tag || (multiple && confirmed >= tag):
                throw TestFailure("the broker refused a message sent")
            default:
                continue
            }
        }
        throw TestFailure("the broker did not confirm a message sent within 10 s")
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
