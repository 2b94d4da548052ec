import AMQPClient
import Contracts
import Foundation
import Logging
import Synchronization
import Testing

@testable import HTTPFacade

/// The RPC client against the real broker and a scripted fake core: what the pure call table promises
/// must hold on the wire too (request properties, late and stray replies, the replay header, a vhost
/// that is not there).
@Suite("RPC client against the broker, with a fake core", .serialized)
struct RPCClientTests {
    /// A core stand-in on its own thread: consumes `inventory.ping.request` and answers as the request
    /// body says (`"late"`: after 1.5 s; `"stray"`: first with an unknown correlation id; `"replayed"`:
    /// with `x-idempotent-replayed: true`). Each reply's data echoes the request's `expiration` and
    /// `x-deadline`.
    final class FakeCore: @unchecked Sendable {
        // @unchecked: `stop` is atomic; the connection lives on the fake core's thread only.
        private let stop = Atomic<Bool>(false)
        private let done = DispatchSemaphore(value: 0)
        private let ready = DispatchSemaphore(value: 0)

        init(configuration: AMQPConfiguration) throws {
            let failure = Mutex<String?>(nil)
            let thread = Thread { [self] in
                defer { done.signal() }
                do {
                    let connection = try AMQPConnection(
                        configuration: configuration,
                        logger: Logger(label: "fake-core")
                    )
                    defer { connection.close() }
                    try connection.declareExchange(RPCOperation.exchange, type: .direct)
                    try connection.declareQueue(RPCOperation.ping.queueName)
                    try connection.bindQueue(
                        RPCOperation.ping.queueName,
                        exchange: RPCOperation.exchange,
                        routingKey: RPCOperation.ping.routingKey
                    )
                    try connection.consume(queue: RPCOperation.ping.queueName, noAck: true)
                    ready.signal()
                    while !stop.load(ordering: .relaxed) {
                        guard case .delivery(let message)? = try connection.nextEvent(timeout: .milliseconds(100))
                        else {
                            continue
                        }
                        try answer(message, on: connection)
                    }
                } catch {
                    failure.withLock { $0 = "\(error)" }
                    ready.signal()
                }
            }
            thread.start()
            ready.wait()
            if let failure = failure.withLock({ $0 }) { throw TestFailure("fake core: \(failure)") }
        }

        private func answer(_ message: AMQPMessage, on connection: AMQPConnection) throws {
            let request = String(decoding: message.body, as: UTF8.self)
            let deadline: String
            if case .int(let value)? = message.properties.headers[ContractHeaders.deadline] {
                deadline = "\(value)"
            } else {
                deadline = "missing"
            }
            let status =
                "\(message.properties.expiration ?? "none")|\(deadline)|\(message.properties.contentType ?? "")"
            let body = Array(#"{"ok":true,"data":{"status":"\#(status)"}}"#.utf8)
            var properties = AMQPProperties(
                contentType: "application/json",
                correlationID: message.properties.correlationID
            )
            if request.contains("late") { usleep(1_500_000) }
            if request.contains("stray") {
                var stray = properties
                stray.correlationID = "not-a-call-of-yours"
                try connection.publish(
                    exchange: "",
                    routingKey: message.properties.replyTo ?? "",
                    body: body,
                    properties: stray
                )
            }
            if request.contains("replayed") { properties.headers["x-idempotent-replayed"] = .bool(true) }
            try connection.publish(
                exchange: "",
                routingKey: message.properties.replyTo ?? "",
                body: body,
                properties: properties
            )
        }

        func close() {
            stop.store(true, ordering: .relaxed)
            done.wait()
        }
    }

    private func call(_ client: RPCClient, _ body: String, timeout: Duration) -> RPCOutcome {
        let result = PendingResult<RPCOutcome>()
        client.call(.ping, body: Array(body.utf8), timeout: timeout) { result.set(.success($0)) }
        return try! result.value()
    }

    private func waitConnected(_ client: RPCClient) throws {
        let deadline = Date().addingTimeInterval(10)
        while !client.isConnected && Date() < deadline { usleep(20_000) }
        guard client.isConnected else { throw TestFailure("RPC client did not connect") }
    }

    @Test("request properties, stray and late replies, the replay header")
    func wire() async throws {
        try await blocking {
            let stack = Stack()
            try stack.createVhost()
            defer { try? stack.deleteVhost() }
            let configuration = try AMQPConfiguration(url: stack.rabbitMQURL)
            let core = try FakeCore(configuration: configuration)
            defer { core.close() }
            let client = try RPCClient(configuration: .init(amqp: configuration), logger: Logger(label: "rpc-test"))
            client.start()
            defer { client.stop() }
            try waitConnected(client)

            let before = Int64(Date().timeIntervalSince1970 * 1000)
            guard case .reply(let body, let replayed) = call(client, #"{"plain":1}"#, timeout: .milliseconds(2000))
            else {
                throw TestFailure("no reply")
            }
            #expect(!replayed)
            let status = try ContractJSON.decode(RPCReply<PingReply>.self, from: body).result.get().status
            let parts = status.split(separator: "|").map(String.init)
            #expect(parts[0] == "2000")
            let deadline = try #require(Int64(parts[1]))
            #expect(deadline >= before + 2000 && deadline <= before + 2000 + 1000, "\(deadline - before)")
            #expect(parts[2] == "application/json")

            guard case .reply(_, true) = call(client, #"{"replayed":1}"#, timeout: .seconds(2)) else {
                throw TestFailure("replay not marked")
            }
            guard case .reply = call(client, #"{"stray":1}"#, timeout: .seconds(2)) else {
                throw TestFailure("a stray reply broke the call")
            }
            let started = ContinuousClock.now
            guard case .failed(.timedOut) = call(client, #"{"late":1}"#, timeout: .milliseconds(300)) else {
                throw TestFailure("late call not timed out")
            }
            #expect(started.duration(to: .now) < .milliseconds(1200))
            // The late reply arrives while this call waits; it must not be taken for this one.
            guard case .reply(let next, _) = call(client, #"{"after":1}"#, timeout: .seconds(3)) else {
                throw TestFailure("no reply after the late one")
            }
            #expect(String(decoding: next, as: UTF8.self).contains("3000|"))
        }
    }

    @Test("many calls at once each get their own reply")
    func concurrentCalls() async throws {
        try await blocking {
            let stack = Stack()
            try stack.createVhost()
            defer { try? stack.deleteVhost() }
            let configuration = try AMQPConfiguration(url: stack.rabbitMQURL)
            let core = try FakeCore(configuration: configuration)
            defer { core.close() }
            let client = try RPCClient(configuration: .init(amqp: configuration), logger: Logger(label: "rpc-test"))
            client.start()
            defer { client.stop() }
            try waitConnected(client)
            let outcomes = try parallel(100) { index in
                self.call(client, #"{"n":\#(index)}"#, timeout: .milliseconds(3000 + index))
            }
            for (index, outcome) in outcomes.enumerated() {
                guard case .reply(let body, _) = outcome else {
                    Issue.record("call \(index): \(outcome)")
                    continue
                }
                #expect(String(decoding: body, as: UTF8.self).contains("\"\(3000 + index)|"), "call \(index)")
            }
        }
    }

    @Test("an operation no core declared is answered unavailable at once (mandatory return), not after the timeout")
    func unroutable() async throws {
        try await blocking {
            let stack = Stack()
            try stack.createVhost()
            defer { try? stack.deleteVhost() }
            // A core declared the exchange (callers only check it) but no queue for the operation.
            let configuration = try AMQPConfiguration(url: stack.rabbitMQURL)
            let setup = try AMQPConnection(configuration: configuration, logger: Logger(label: "rpc-test"))
            try setup.declareExchange(RPCOperation.exchange, type: .direct)
            setup.close()
            let client = try RPCClient(
                configuration: .init(amqp: configuration),
                logger: Logger(label: "rpc-test")
            )
            client.start()
            defer { client.stop() }
            try waitConnected(client)
            let started = ContinuousClock.now
            guard case .failed(.unroutable) = call(client, "{}", timeout: .seconds(5)) else {
                throw TestFailure("expected unroutable")
            }
            #expect(started.duration(to: .now) < .seconds(1))
        }
    }

    @Test("no broker: calls fail unavailable at once while the client keeps retrying")
    func noBroker() async throws {
        try await blocking {
            // A vhost that does not exist: the broker refuses the login, as an absent broker refuses TCP.
            var configuration = try AMQPConfiguration(url: "amqp://guest:guest@localhost:5672/\(uniqueName("absent"))")
            configuration.connectTimeout = .seconds(1)
            let client = try RPCClient(configuration: .init(amqp: configuration), logger: Logger(label: "rpc-test"))
            client.start()
            defer { client.stop() }
            usleep(300_000)
            for _ in 0..<5 {
                let started = ContinuousClock.now
                guard case .failed(.unavailable) = call(client, "{}", timeout: .seconds(5)) else {
                    throw TestFailure("expected unavailable")
                }
                #expect(started.duration(to: .now) < .milliseconds(250))
            }
        }
    }
}
