import AMQPClient
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import InventoryRPCClient

/// The threaded client against the real broker and a scripted server: calls from many threads, the
/// request properties on the wire, returns, no broker, waiting for one, stopping.
@Suite("RPC client against the broker, with a scripted server")
struct RPCClientTests {
    private func client(
        _ purpose: String,
        amqp: AMQPConfiguration? = nil,
        whileDisconnected: RPCDisconnectedPolicy = .failAtOnce
    ) throws -> RPCClient {
        var configuration = RPCClient.Configuration(
            amqp: try amqp ?? TestBroker.configuration(purpose),
            whileDisconnected: whileDisconnected,
            name: "rpc-test-\(purpose)"
        )
        configuration.channel.declareExchange = nil
        let client = try RPCClient(configuration: configuration, logger: TestBroker.logger)
        client.start()
        return client
    }

    private func call(_ client: RPCClient, _ request: RPCRequest) throws -> Result<RPCResponse, RPCFailure> {
        let answer = Answer<Result<RPCResponse, RPCFailure>>()
        client.call(request) { answer.set($0) }
        return try answer.wait(request.timeout + .seconds(5))
    }

    private func waitConnected(_ client: RPCClient) throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !client.isConnected && ContinuousClock.now < deadline { usleep(20_000) }
        guard client.isConnected else { throw TestFailure("RPC client did not connect") }
    }

    private func fields(_ outcome: Result<RPCResponse, RPCFailure>) throws -> [String] {
        String(decoding: try outcome.get().body, as: UTF8.self).split(separator: "|").map(String.init)
    }

    @Test(
        "request properties on the wire: expiration, x-deadline, content type, message and correlation id, user_id = the login"
    )
    func wire() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let client = try client("wire")
            defer { client.stop() }
            try waitConnected(client)
            let before = Int64(Date().timeIntervalSince1970 * 1000)
            let correlationID = client.makeCorrelationID()
            let request = RPCRequest(
                exchange: "",
                routingKey: server.queue,
                body: Array("plain".utf8),
                timeout: .milliseconds(2000),
                correlationID: correlationID
            )
            let parts = try fields(try call(client, request))
            // The time left when published: the full timeout less the hop to the client's thread.
            let expiration = try #require(Int64(parts[0]))
            #expect(expiration <= 2000 && expiration > 1000, "\(expiration)")
            let deadline = try #require(Int64(parts[1]))
            #expect(deadline >= before + 1000 && deadline <= before + 2000 + 1000, "\(deadline - before)")
            #expect(parts[2] == "application/json")
            #expect(parts[3] == correlationID)
            #expect(parts[4] == correlationID)
            // The broker user, which RabbitMQ checks and the core authorizes by (decision 0011).
            #expect(parts[5] == (try TestBroker.configuration("wire").user))
        }
    }

    @Test("async callers await their reply without blocking a thread")
    func asyncCall() async throws {
        let server = try await blocking { try ScriptedServer() }
        let client = try client("async")
        try await blocking { try waitConnected(client) }
        let request = RPCRequest(
            exchange: "",
            routingKey: server.queue,
            body: Array("async".utf8),
            timeout: .seconds(5)
        )
        let outcome = await client.call(request)
        await client.shutdown()
        try await blocking { server.stop() }
        #expect(try fields(outcome).last == "async")
    }

    @Test("many calls from many threads at once each get their own reply")
    func concurrentCalls() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let client = try client("concurrent")
            defer { client.stop() }
            try waitConnected(client)
            let answers = (0..<100).map { _ in Answer<Result<RPCResponse, RPCFailure>>() }
            DispatchQueue.concurrentPerform(iterations: 100) { index in
                let request = RPCRequest(
                    exchange: "",
                    routingKey: server.queue,
                    body: Array("n\(index)".utf8),
                    timeout: .milliseconds(3000 + index)
                )
                client.call(request) { answers[index].set($0) }
            }
            for (index, answer) in answers.enumerated() {
                let parts = try fields(try answer.wait())
                #expect(parts.last == "n\(index)", "call \(index)")
                #expect(Int(parts[0]).map { $0 <= 3000 + index && $0 > 1000 } == true, "call \(index): \(parts[0])")
            }
        }
    }

    @Test("a request nobody consumes fails unroutable at once (mandatory return), not after the timeout")
    func unroutable() async throws {
        try await blocking {
            let client = try client("unroutable")
            defer { client.stop() }
            try waitConnected(client)
            let started = ContinuousClock.now
            let outcome = try call(
                client,
                RPCRequest(exchange: "", routingKey: uniqueName("nobody"), body: [], timeout: .seconds(30))
            )
            #expect(outcome == .failure(.unroutable))
            // At once (the broker's return), not at the 30 s timeout.
            #expect(started.duration(to: .now) < .seconds(15))
        }
    }

    @Test("no broker: calls fail notConnected at once while the client keeps retrying")
    func noBroker() async throws {
        try await blocking {
            // A vhost that does not exist: the broker refuses the login, as an absent broker refuses TCP.
            var amqp = try AMQPConfiguration(url: "amqp://guest:guest@localhost:5672/\(uniqueName("absent"))")
            amqp.connectTimeout = .seconds(1)
            let client = try client("no-broker", amqp: amqp)
            defer { client.stop() }
            usleep(300_000)
            for _ in 0..<5 {
                let started = ContinuousClock.now
                let outcome = try call(
                    client,
                    RPCRequest(exchange: "", routingKey: "q", body: [], timeout: .seconds(30))
                )
                #expect(outcome == .failure(.notConnected))
                // At once, not after the call's timeout: far below 30 s whatever the machine's load.
                #expect(started.duration(to: .now) < .seconds(15))
            }
        }
    }

    @Test("no broker, waiting for a connection: a call fails notConnected at its deadline, not before")
    func noBrokerWaiting() async throws {
        try await blocking {
            var amqp = try AMQPConfiguration(url: "amqp://guest:guest@localhost:5672/\(uniqueName("absent"))")
            amqp.connectTimeout = .seconds(1)
            let client = try client("no-broker-wait", amqp: amqp, whileDisconnected: .waitForConnection)
            defer { client.stop() }
            let started = ContinuousClock.now
            let outcome = try call(
                client,
                RPCRequest(exchange: "", routingKey: "q", body: [], timeout: .milliseconds(400))
            )
            #expect(outcome == .failure(.notConnected))
            #expect(started.duration(to: .now) >= .milliseconds(400))
        }
    }

    @Test("a lost connection fails the calls in flight connectionLost; the client reconnects by itself")
    func reconnects() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let client = try client("reconnect")
            defer { client.stop() }
            try waitConnected(client)
            let silent = Answer<Result<RPCResponse, RPCFailure>>()
            client.call(
                RPCRequest(exchange: "", routingKey: server.queue, body: Array("silent".utf8), timeout: .seconds(10))
            ) {
                silent.set($0)
            }
            // The broker closes the channel (404) for a publish to a missing exchange, and with it the connection.
            let missing = RPCRequest(exchange: uniqueName("missing"), routingKey: "x", body: [], timeout: .seconds(10))
            client.call(missing) { _ in }
            #expect(try silent.wait(.seconds(5)) == .failure(.connectionLost))
            let deadline = ContinuousClock.now + .seconds(10)
            var outcome: Result<RPCResponse, RPCFailure> = .failure(.notConnected)
            while ContinuousClock.now < deadline {
                outcome = try call(
                    client,
                    RPCRequest(exchange: "", routingKey: server.queue, body: Array("back".utf8), timeout: .seconds(2))
                )
                if case .success = outcome { break }
                usleep(50_000)
            }
            #expect(try fields(outcome).last == "back")
        }
    }

    @Test("shutdown() answers the calls in flight stopped and returns once the thread has finished")
    func stop() async throws {
        let server = try await blocking { try ScriptedServer() }
        defer { server.stop() }
        let client = try client("stop")
        try await blocking { try waitConnected(client) }
        let silent = Answer<Result<RPCResponse, RPCFailure>>()
        client.call(
            RPCRequest(exchange: "", routingKey: server.queue, body: Array("silent".utf8), timeout: .seconds(30))
        ) {
            silent.set($0)
        }
        await client.shutdown()
        #expect(try silent.wait(.seconds(1)) == .failure(.stopped))
        #expect(!client.isConnected)
        let late = Answer<Result<RPCResponse, RPCFailure>>()
        client.call(RPCRequest(exchange: "", routingKey: server.queue, body: [], timeout: .seconds(1))) { late.set($0) }
        #expect(try late.wait(.zero) == .failure(.notConnected))
    }
}
