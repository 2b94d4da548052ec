import AMQPClient
import Foundation
import Logging
import Synchronization

/// The shared test broker (RabbitMQ on localhost; AMQP_URL overrides). Tests here use the default vhost
/// and queues of their own (`uniqueName`), reached through the default exchange, so they need no fixture
/// and run beside each other and everyone else.
enum TestBroker {
    static let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"

    static func configuration(_ purpose: String) throws -> AMQPConfiguration {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "rpc-client-tests \(purpose)"
        return configuration
    }

    static let logger: Logger = {
        var logger = Logger(label: "rpc-client-tests")
        logger.logLevel = .error
        return logger
    }()
}

func uniqueName(_ kind: String) -> String {
    "rpc-client-tests.\(kind).\(UUID().uuidString)"
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work on a thread of its own: the AMQP calls block, and Swift's cooperative pool has
/// two threads on this machine.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
}

/// A value set once by some thread and awaited (bounded) by another.
final class Answer<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    private let arrived = DispatchSemaphore(value: 0)

    func set(_ newValue: T) {
        value.withLock { $0 = newValue }
        arrived.signal()
    }

    func wait(_ limit: Duration = .seconds(10)) throws -> T {
        let (seconds, attoseconds) = limit.components
        let milliseconds = Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
        guard arrived.wait(timeout: .now() + .milliseconds(milliseconds)) == .success else {
            throw TestFailure("no answer within \(limit)")
        }
        arrived.signal()
        return value.withLock { $0! }
    }

    var isSet: Bool { value.withLock { $0 != nil } }
}

/// A scripted RPC server on a queue of its own, on its own thread. It answers by the request body:
/// `late` after 1.5 s; `stray` first with a correlation id nobody issued; `replayed` with
/// `x-idempotent-replayed: true`; `silent` not at all. A reply's body is
/// `expiration|x-deadline|content_type|message_id|correlation_id|request body`.
final class ScriptedServer: Sendable {
    let queue = uniqueName("server")
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init() throws {
        let ready = Answer<String?>()
        let thread = Thread { [self] in
            defer { done.signal() }
            do {
                let connection = try AMQPConnection(
                    configuration: try TestBroker.configuration("server"),
                    logger: TestBroker.logger
                )
                defer { connection.close() }
                try connection.declareQueue(queue, durable: false, exclusive: true, autoDelete: true)
                try connection.consume(queue: queue, noAck: true)
                ready.set(nil)
                while !self.stopping.load(ordering: .relaxed) {
                    guard case .delivery(let message)? = try connection.nextEvent(timeout: .milliseconds(100)) else {
                        continue
                    }
                    try Self.answer(message, on: connection)
                }
            } catch {
                if !ready.isSet { ready.set("\(error)") }
            }
        }
        thread.start()
        if let failure = try ready.wait() { throw TestFailure("scripted server: \(failure)") }
    }

    private static func answer(_ message: AMQPMessage, on connection: AMQPConnection) throws {
        let request = String(decoding: message.body, as: UTF8.self)
        if request.contains("silent") { return }
        let deadline: String
        if case .int(let value)? = message.properties.headers["x-deadline"] {
            deadline = "\(value)"
        } else {
            deadline = "missing"
        }
        let properties = message.properties
        let fields = [
            properties.expiration ?? "none", deadline, properties.contentType ?? "none", properties.messageID ?? "none",
            properties.correlationID ?? "none", request,
        ]
        let body = Array(fields.joined(separator: "|").utf8)
        var reply = AMQPProperties(contentType: "application/json", correlationID: properties.correlationID)
        if request.contains("late") { usleep(1_500_000) }
        if request.contains("stray") {
            var stray = reply
            stray.correlationID = "not-a-call-of-yours"
            try connection.publish(exchange: "", routingKey: properties.replyTo ?? "", body: body, properties: stray)
        }
        if request.contains("replayed") { reply.headers["x-idempotent-replayed"] = .bool(true) }
        try connection.publish(exchange: "", routingKey: properties.replyTo ?? "", body: body, properties: reply)
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        done.wait()
    }
}
