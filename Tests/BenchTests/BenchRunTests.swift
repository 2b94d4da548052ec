import AMQPClient
import Contracts
import Foundation
import TestSupport
import Testing

@testable import Bench

@Suite("inventory-bench against a running core", .serialized)
struct BenchRunTests {
    /// Starts `inventory-rpc serve` on its own vhost and database and waits for it to answer a ping.
    /// BENCH_TEST_STUB=1 runs the bench against the storage-only `StubCore` instead.
    private func withCore<T>(_ body: (_ amqpURL: String, _ databaseURL: String) throws -> T) throws -> T {
        try withScratchVhost(prefix: "bench-test") { vhost in
            let amqpURL = vhost.url
            return try withMigratedDatabase { databaseURL in
                if ProcessInfo.processInfo.environment["BENCH_TEST_STUB"] == "1" {
                    let stub = try StubCore(amqpURL: amqpURL, databaseURL: databaseURL, logger: quietLogger)
                    defer { stub.stop() }
                    return try body(amqpURL, databaseURL)
                }
                let core = try ServerProcess(
                    product: "inventory-rpc",
                    ["serve"],
                    environment: [
                        "DATABASE_URL": databaseURL, "RABBITMQ_URL": amqpURL, "HOLD_TTL_SECONDS": "2",
                        "EXPIRY_INTERVAL_SECONDS": "1", "OPS_PORT": "0", "LOG_LEVEL": "warning",
                        // The benchmark's drivers log in as guest: the core's table grants it (and warns).
                        "RPC_PERMISSIONS": permissionsWithGuest,
                    ]
                )
                defer { core.stop() }
                guard try answersPing(amqpURL, within: .seconds(20), while: { core.isRunning }) else {
                    throw TestFailure("inventory-rpc serve did not answer ping.request within 20 s")
                }
                return try body(amqpURL, databaseURL)
            }
        }
    }

    private func answersPing(_ url: String, within limit: Duration, while alive: () -> Bool) throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline && alive() {
            // The queues exist once the core has declared them; a publish before that is simply unroutable.
            if let caller = try? RPCCaller(configuration: try AMQPConfiguration(url: url), logger: quietLogger) {
                defer { caller.close() }
                if (try? caller.call(.ping, PingRequest(), as: PingReply.self, timeout: .seconds(1))) != nil {
                    return true
                }
            }
            Thread.sleep(forTimeInterval: 0.3)
        }
        return false
    }

    @Test("a few seconds of the mix and hot shapes over AMQP: answers counted, latencies reported, verified")
    func runsAndVerifies() throws {
        try withCore { amqpURL, databaseURL in
            var options = BenchOptions(
                transport: .amqp,
                amqpURL: amqpURL,
                databaseURL: databaseURL,
                inFlight: 16,
                connections: 2,
                duration: .seconds(3),
                warmup: .milliseconds(500),
                timeout: .seconds(5),
                showtimes: 2,
                seatsPerShowtime: 300,
                seatsPerHold: 1...3,
                shape: .mix,
                verify: true
            )
            let mix = try BenchRunner.run(options, logger: quietLogger)
            print(mix.report.text())
            let holds = try #require(mix.report.operations.first { $0.operation == "hold" })
            #expect(holds.won > 0)
            #expect(holds.throughputPerSecond > 0 && holds.p50Ms > 0 && holds.maxMs >= holds.p99Ms)
            #expect(mix.report.operations.contains { $0.operation == "availability" && $0.won > 0 })
            #expect(mix.report.operations.allSatisfy { $0.error == 0 && $0.timeout == 0 })
            #expect(mix.report.unanswered == 0)
            let verification = try #require(mix.report.verification)
            #expect(verification.passed, "\(verification.text())")
            #expect((verification.eventsReceived ?? 0) >= holds.won)

            options.shape = .hot
            options.inFlight = 64
            options.duration = .seconds(2)
            options.runID = "bench-hot-\(UInt32.random(in: 0...UInt32.max))"
            let hot = try BenchRunner.run(options, logger: quietLogger)
            print(hot.report.text())
            let hotHolds = try #require(hot.report.operations.first { $0.operation == "hold" })
            #expect(hotHolds.won > 0 && hotHolds.conflict > 0)
            #expect(hot.report.unanswered == 0)
            #expect(hot.passed, "\(hot.report.verification?.text() ?? "")")
        }
    }

    @Test("a few seconds of the mix over REST through http-facade, with a bearer token per user, verified")
    func http() throws {
        try withCore { amqpURL, databaseURL in
            let facade = try startFacade(amqpURL: amqpURL)
            defer { facade.process.stop() }
            let options = BenchOptions(
                transport: .http,
                amqpURL: amqpURL,
                httpURL: "http://127.0.0.1:\(facade.port)",
                databaseURL: databaseURL,
                inFlight: 16,
                connections: 2,
                duration: .seconds(2),
                warmup: .milliseconds(500),
                timeout: .seconds(5),
                showtimes: 2,
                seatsPerShowtime: 5_000,
                seatsPerHold: 1...3,
                shape: .mix,
                verify: true,
                tokens: facadeTokens
            )
            let outcome = try BenchRunner.run(options, logger: quietLogger)
            print(outcome.report.text())
            // Holds were won over REST and each checked against the database and the events. Counted over the
            // whole run, warm-up included: on a loaded machine (load 18 once) the 2 s window may end before a
            // hold it began is answered, so the window's table is not what is judged.
            #expect((outcome.report.verification?.wonHoldsChecked ?? 0) > 0, "no hold was won over REST")
            #expect(outcome.report.operations.allSatisfy { $0.error == 0 && $0.timeout == 0 })
            #expect(outcome.report.unanswered == 0 && outcome.report.transportErrors == 0)
            #expect(outcome.passed, "\(outcome.report.verification?.text() ?? "")")
        }
    }

    @Test("over REST, the first request waits for the facade's /readyz 200 (a facade started before its core)")
    func httpAwaitsReadiness() throws {
        try withScratchVhost(prefix: "bench-test") { vhost in
            let amqpURL = vhost.url
            try withMigratedDatabase { databaseURL in
                let (facade, port) = try startFacade(amqpURL: amqpURL)
                defer { facade.stop() }
                // Up but not ready: no core answers ping yet. Before the fix, provisioning sent its first
                // PUT now and failed with this 503.
                let (status, _) = try httpCall(host: "127.0.0.1", port: port, method: "GET", path: "/readyz", body: [])
                #expect(status == 503)
                let core = LateCore()
                defer { core.stop() }
                core.start(databaseURL: databaseURL, amqpURL: amqpURL, afterSeconds: 0.5)
                let options = BenchOptions(
                    transport: .http,
                    amqpURL: amqpURL,
                    httpURL: "http://127.0.0.1:\(port)",
                    databaseURL: databaseURL,
                    showtimes: 1,
                    seatsPerShowtime: 10,
                    verify: false,
                    tokens: facadeTokens
                )
                try BenchRunner.provision(options, amqp: try AMQPConfiguration(url: amqpURL), logger: quietLogger)
                #expect(core.error == nil, "\(core.error.map { "\($0)" } ?? "")")
            }
        }
    }

    @Test("the null RPC echo answers every request")
    func echo() throws {
        try withScratchVhost(prefix: "bench-test") { vhost in
            let amqpURL = vhost.url
            let options = BenchOptions(
                transport: .echo,
                amqpURL: amqpURL,
                inFlight: 16,
                connections: 2,
                duration: .seconds(1),
                warmup: .milliseconds(200),
                verify: false,
                echoServers: 1
            )
            let outcome = try BenchRunner.run(options, logger: quietLogger)
            let echo = try #require(outcome.report.operations.first)
            #expect(echo.operation == "echo" && echo.won > 0 && echo.error == 0 && echo.timeout == 0)
        }
    }

    @Test("the echo through a durable queue answers every request, and its queue is gone after the run")
    func durableEcho() throws {
        try withScratchVhost(prefix: "bench-test") { vhost in
            let configuration = try AMQPConfiguration(url: vhost.url)
            var options = BenchOptions(
                transport: .echo,
                amqpURL: vhost.url,
                inFlight: 16,
                connections: 2,
                duration: .seconds(1),
                warmup: .milliseconds(200),
                verify: false,
                echoServers: 1
            )
            options.echoDurableQueue = true
            let outcome = try BenchRunner.run(options, logger: quietLogger)
            let echo = try #require(outcome.report.operations.first)
            #expect(echo.operation == "echo" && echo.won > 0 && echo.error == 0 && echo.timeout == 0)
            #expect(outcome.report.transportErrors == 0)

            // The server on its own: its queue is there while it serves (a durable one: a passive declare
            // finds it with the server's consumer), and deleted by stop().
            let server = try EchoServer(configuration: configuration, threads: 1, durable: true, logger: quietLogger)
            let inspector = try AMQPConnection(configuration: configuration, logger: quietLogger)
            #expect(try inspector.inspectQueue(server.queue).consumerCount == 1)
            inspector.close()
            #expect(server.stop().isEmpty)
            let after = try AMQPConnection(configuration: configuration, logger: quietLogger)
            defer { after.close() }
            #expect(throws: AMQPError.self) { try after.inspectQueue(server.queue) }
        }
    }
}

/// A core started on another thread a moment after the test goes on (so the test's first request comes
/// before any core exists), stopped by `stop()`.
final class LateCore: @unchecked Sendable {
    // @unchecked: `core` and `failure` are only touched under `lock`; `thread` only by the test's thread.
    private let lock = NSLock()
    private var core: ServerProcess?
    private var failure: (any Error)?
    private var thread: Thread?
    private let started = DispatchSemaphore(value: 0)

    var error: (any Error)? { lock.withLock { failure } }

    func start(databaseURL: String, amqpURL: String, afterSeconds delay: Double) {
        let thread = Thread { [self] in
            Thread.sleep(forTimeInterval: delay)
            do {
                let process = try ServerProcess(
                    product: "inventory-rpc",
                    ["serve"],
                    environment: [
                        "DATABASE_URL": databaseURL, "RABBITMQ_URL": amqpURL, "HOLD_TTL_SECONDS": "2",
                        "EXPIRY_INTERVAL_SECONDS": "1", "OPS_PORT": "0", "LOG_LEVEL": "warning",
                        "RPC_PERMISSIONS": permissionsWithGuest,
                    ]
                )
                lock.withLock { core = process }
            } catch {
                lock.withLock { failure = error }
            }
            started.signal()
        }
        self.thread = thread
        thread.start()
    }

    func stop() {
        if thread != nil { started.wait() }
        lock.withLock { core }?.stop()
    }
}
