import AMQPClient
import Foundation
import TestSupport
import Testing

@testable import InventoryRPCClient

/// The channel against the real broker and a scripted server: what the pure call table promises must hold
/// on the wire too.
@Suite("RPC channel against the broker, with a scripted server")
struct RPCChannelTests {
    private func channel(_ purpose: String) throws -> RPCChannel {
        RPCChannel(
            configuration: .init(amqp: try TestBroker.configuration(purpose), declareExchange: nil),
            logger: TestBroker.logger
        )
    }

    private func request(_ server: ScriptedServer, _ body: String, timeout: Duration = .seconds(5)) -> RPCRequest {
        RPCRequest(exchange: "", routingKey: server.queue, body: Array(body.utf8), timeout: timeout)
    }

    @Test("blocking calls: the reply, a stray reply ignored, a late reply timed out and then ignored")
    func blockingCalls() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let channel = try channel("blocking")
            defer { channel.close() }
            try channel.connect()

            let reply = try channel.call(request(server, "plain")).get()
            #expect(String(decoding: reply.body, as: UTF8.self).hasSuffix("|plain"))
            #expect(!reply.isIdempotentReplay)
            #expect(try channel.call(request(server, "replayed")).get().isIdempotentReplay)
            let strayed = try channel.call(request(server, "stray")).get()
            #expect(String(decoding: strayed.body, as: UTF8.self).hasSuffix("|stray"))

            let started = ContinuousClock.now
            #expect(try channel.call(request(server, "late", timeout: .milliseconds(300))) == .failure(.timedOut))
            // Timed out, not hung (far from any bound a loaded machine could reach).
            #expect(started.duration(to: .now) < .seconds(10))
            // The late reply comes while the next call waits: it must not be taken for it.
            let next = try channel.call(request(server, "after")).get()
            #expect(String(decoding: next.body, as: UTF8.self).hasSuffix("|after"))
            #expect(channel.pendingCount == 0)
        }
    }

    @Test("a request nobody consumes comes back (mandatory) and fails unroutable at once")
    func unroutable() async throws {
        try await blocking {
            let channel = try channel("unroutable")
            defer { channel.close() }
            try channel.connect()
            let started = ContinuousClock.now
            let outcome = try channel.call(
                RPCRequest(exchange: "", routingKey: uniqueName("nobody"), body: [], timeout: .seconds(30))
            )
            #expect(outcome == .failure(.unroutable))
            // At once (the broker's return), not at the 30 s timeout.
            #expect(started.duration(to: .now) < .seconds(15))
        }
    }

    @Test("completions may send the next call on the channel: a pipeline of 200 calls, 20 in flight")
    func pipeline() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let channel = try channel("pipeline")
            defer { channel.close() }
            try channel.connect()
            var answered: [Int] = []
            var failures: [RPCFailure] = []
            var next = 0
            func send() {
                let number = next
                next += 1
                channel.send(request(server, "n\(number)")) { outcome in
                    switch outcome {
                    case .success(let reply):
                        #expect(String(decoding: reply.body, as: UTF8.self).hasSuffix("|n\(number)"))
                        answered.append(number)
                    case .failure(let failure):
                        failures.append(failure)
                    }
                    if next < 200 { send() }
                }
            }
            for _ in 0..<20 { send() }
            let deadline = ContinuousClock.now + .seconds(20)
            while answered.count + failures.count < 200 && ContinuousClock.now < deadline {
                try channel.poll(timeout: .milliseconds(100))
            }
            #expect(failures.isEmpty)
            #expect(answered.sorted() == Array(0..<200))
        }
    }

    @Test("a lost connection fails the calls published on it connectionLost and is thrown; connect() recovers")
    func connectionLost() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let channel = try channel("lost")
            defer { channel.close() }
            try channel.connect()
            let silent = Answer<Result<RPCResponse, RPCFailure>>()
            channel.send(request(server, "silent")) { silent.set($0) }
            // A publish to an exchange that does not exist: the broker closes the channel (404), which
            // closes the connection under the silent call.
            let missing = RPCRequest(exchange: uniqueName("missing"), routingKey: "x", body: [], timeout: .seconds(5))
            let lost = Answer<Result<RPCResponse, RPCFailure>>()
            channel.send(missing) { lost.set($0) }
            var thrown: AMQPError?
            let deadline = ContinuousClock.now + .seconds(5)
            while thrown == nil && ContinuousClock.now < deadline {
                do throws(AMQPError) { try channel.poll(timeout: .milliseconds(100)) } catch { thrown = error }
            }
            #expect(thrown?.replyCode == 404, "\(String(describing: thrown))")
            #expect(!channel.isConnected)
            #expect(try silent.wait(.zero) == .failure(.connectionLost))
            #expect(try lost.wait(.zero) == .failure(.connectionLost))
            #expect(try channel.call(request(server, "meanwhile")) == .failure(.notConnected))

            try channel.connect()
            #expect(
                String(decoding: try channel.call(request(server, "again")).get().body, as: UTF8.self).hasSuffix(
                    "|again"
                )
            )
        }
    }

    @Test("close answers the calls in flight stopped, after publishing them; the channel connects again")
    func close() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let channel = try channel("close")
            defer { channel.close() }
            try channel.connect()
            let answer = Answer<Result<RPCResponse, RPCFailure>>()
            channel.send(request(server, "silent")) { answer.set($0) }
            channel.close()
            #expect(try answer.wait(.zero) == .failure(.stopped))
            #expect(!channel.isConnected)
            try channel.connect()
            #expect((try? channel.call(request(server, "reopened")).get()) != nil)
        }
    }

    @Test("waiting for a connection: a call made before connect() is published by it")
    func waitsForConnection() async throws {
        try await blocking {
            let server = try ScriptedServer()
            defer { server.stop() }
            let channel = RPCChannel(
                configuration: .init(
                    amqp: try TestBroker.configuration("wait"),
                    declareExchange: nil,
                    whileDisconnected: .waitForConnection
                ),
                logger: TestBroker.logger
            )
            defer { channel.close() }
            let answer = Answer<Result<RPCResponse, RPCFailure>>()
            channel.send(request(server, "early")) { answer.set($0) }
            #expect(channel.pendingCount == 1)
            try channel.connect()
            let deadline = ContinuousClock.now + .seconds(5)
            while !answer.isSet && ContinuousClock.now < deadline { try channel.poll(timeout: .milliseconds(100)) }
            let reply = try answer.wait(.zero).get()
            #expect(String(decoding: reply.body, as: UTF8.self).hasSuffix("|early"))
        }
    }
}

extension Result where Success == RPCResponse, Failure == RPCFailure {
    static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.failure(let left), .failure(let right)): left == right
        default: false
        }
    }
}
