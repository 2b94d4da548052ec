import AMQPClient
import ArgumentParser
import Bench
import Contracts
import Foundation
import HTTPFacade
import Logging

@main
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory-bench",
        abstract: "Ticket-rush load generator, oversell verifier and null-RPC ceiling for the seat inventory.",
        discussion: """
            Environment: RABBITMQ_URL (default amqp://guest:guest@localhost:5672), DATABASE_URL (for the
            verifier), FACADE_URL (http mode, default http://localhost:3005). See BENCHMARKS.md.
            """,
        subcommands: [
            AMQP.self, HTTP.self, Echo.self, Verify.self, Sweep.self, Ping.self, StubCoreCommand.self,
            JWTCostCommand.self,
        ]
    )
}

struct Connection: ParsableArguments {
    @Option(help: "The broker (default: $RABBITMQ_URL or amqp://guest:guest@localhost:5672).")
    var amqpURL: String?
    @Option(help: "The database, for the verifier (default: $DATABASE_URL).")
    var databaseURL: String?

    var resolvedAMQP: String {
        amqpURL ?? ProcessInfo.processInfo.environment["RABBITMQ_URL"] ?? "amqp://guest:guest@localhost:5672"
    }
    var resolvedDatabase: String? { databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"] }
}

struct LoadOptions: ParsableArguments {
    @Option(help: "Requests in flight (closed loop: one simulated user per request).")
    var inFlight = 64
    @Option(help: "Driver threads: each owns one AMQP connection (or its share of the HTTP sockets).")
    var connections = 2
    @Option(help: "Measured seconds.")
    var duration = 10.0
    @Option(help: "Warm-up seconds before measuring (requests started then are not counted).")
    var warmup = 2.0
    @Option(help: "Seconds before an unanswered request counts as a timeout.")
    var timeout = 5.0
    @Option(help: "Showtimes to provision (seats.define) for the run.")
    var showtimes = 20
    @Option(help: "Seats per showtime.")
    var seatsPerShowtime = 10_000
    @Option(help: "Seats per hold: N or A-B (adjacent seats, length drawn from the range).")
    var seatsPerHold = "1-4"
    @Option(help: "uniform | hot | mix | availability | best-available")
    var shape: RushShape = .uniform
    @Option(help: "hot: how many seats everybody wants (of the first showtime).")
    var hotSeats = 10
    @Option(help: "hot: share of holds that go for the hot seats.")
    var hotFraction = 0.9
    @Flag(help: "ANALYZE seat_states after provisioning (shows what stale planner statistics cost a new showtime).")
    var analyze = false
    @Flag(help: "Skip the verification at the end.")
    var noVerify = false
    @Flag(help: "Print the report as JSON.")
    var json = false
    @Option(help: "The run's id: its showtimes are ID-st0, ID-st1, ... (default: bench-<random>).")
    var runId: String?
    @Flag(
        help: """
            A new buyer (user id) for every hold and what follows it: a crowd arriving, each buyer a few \
            requests, instead of the same users holding again and again (who would meet per-user limits).
            """
    )
    var buyerPerHold = false

    func seatsRange() throws -> ClosedRange<Int> {
        let parts = seatsPerHold.split(separator: "-").compactMap { Int($0) }
        switch parts.count {
        case 1 where parts[0] >= 1: return parts[0]...parts[0]
        case 2 where parts[0] >= 1 && parts[1] >= parts[0]: return parts[0]...parts[1]
        default: throw ValidationError("--seats-per-hold takes N or A-B, got \(seatsPerHold)")
        }
    }
}

extension RushShape: ExpressibleByArgument {}

func makeLogger() -> Logger {
    var logger = Logger(label: "inventory-bench") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel =
        ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    return logger
}

func seconds(_ value: Double) -> Duration { .milliseconds(Int64(value * 1000)) }

func runLoad(
    _ transport: Transport,
    connection: Connection,
    load: LoadOptions,
    httpURL: String,
    tokens: BenchTokens? = nil
) throws {
    var options = BenchOptions(
        transport: transport,
        amqpURL: connection.resolvedAMQP,
        httpURL: httpURL,
        databaseURL: connection.resolvedDatabase,
        inFlight: load.inFlight,
        connections: load.connections,
        duration: seconds(load.duration),
        warmup: seconds(load.warmup),
        timeout: seconds(load.timeout),
        showtimes: load.showtimes,
        seatsPerShowtime: load.seatsPerShowtime,
        seatsPerHold: try load.seatsRange(),
        shape: load.shape,
        hotSeats: load.hotSeats,
        hotFraction: load.hotFraction,
        verify: !load.noVerify && transport != .echo,
        runID: load.runId,
        tokens: tokens
    )
    options.analyzeAfterProvisioning = load.analyze
    options.buyerPerHold = load.buyerPerHold
    if options.verify && options.databaseURL == nil {
        throw ValidationError("the verifier needs DATABASE_URL (or --database-url); --no-verify skips it")
    }
    let outcome = try BenchRunner.run(options, logger: makeLogger()) { message in
        // With --json, stdout is the report alone; the progress lines go to stderr, where a script can
        // follow them (bench/issue16.sh starts its CPU counters when the warm-up begins).
        if load.json {
            FileHandle.standardError.write(Data((message + "\n").utf8))
        } else {
            print(message)
        }
    }
    if load.json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(outcome.report), as: UTF8.self))
    } else {
        print(outcome.report.text())
    }
    if !outcome.passed { throw ExitCode(1) }
}

extension BenchCommand {
    struct AMQP: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "amqp",
            abstract: "Drive the core over AMQP RPC (direct reply-to, correlation ids)."
        )
        @OptionGroup var connection: Connection
        @OptionGroup var load: LoadOptions

        func run() throws { try runLoad(.amqp, connection: connection, load: load, httpURL: "http://localhost:3005") }
    }

    struct HTTP: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "http",
            abstract: "Drive the REST facade (HTTP/1.1 keep-alive, one socket per request in flight)."
        )
        @OptionGroup var connection: Connection
        @OptionGroup var load: LoadOptions
        @Option(
            help: """
                The facade (default: $FACADE_URL or http://localhost:3005); several separated by commas: driver \
                thread i sends to facade i mod count (--connections 2 over two facades: one thread each).
                """
        )
        var facadeURL: String?
        @OptionGroup var auth: TokenOptions

        func run() throws {
            let url = facadeURL ?? ProcessInfo.processInfo.environment["FACADE_URL"] ?? "http://localhost:3005"
            try runLoad(.http, connection: connection, load: load, httpURL: url, tokens: auth.tokens())
        }
    }

    struct Echo: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "echo",
            abstract: "Null AMQP RPC through the project's AMQP layer: echo server threads plus the same client."
        )
        @OptionGroup var connection: Connection
        @OptionGroup var load: LoadOptions
        @Option(help: "Echo server threads (competing consumers of one queue).")
        var servers = 2
        @Flag(
            help: """
                A durable queue, as the core's RPC queues (a quorum queue when the URL says queue_type=quorum), \
                deleted at the end; default: a transient auto-delete classic queue.
                """
        )
        var durableQueue = false

        func run() throws {
            var load = load
            load.noVerify = true
            var options = BenchOptions(
                transport: .echo,
                amqpURL: connection.resolvedAMQP,
                inFlight: load.inFlight,
                connections: load.connections,
                duration: seconds(load.duration),
                warmup: seconds(load.warmup),
                timeout: seconds(load.timeout),
                verify: false,
                echoServers: servers
            )
            options.echoDurableQueue = durableQueue
            // Progress on stderr, as the load commands print it with --json (a script follows the warm-up).
            let outcome = try BenchRunner.run(options, logger: makeLogger()) { message in
                if load.json { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            }
            if load.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(outcome.report), as: UTF8.self))
            } else {
                print(outcome.report.text())
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the database alone: no seat in two live holds, none sold twice, seat rows and outbox "
                + "consistent with the holds. Exits 1 on any violation."
        )
        @OptionGroup var connection: Connection
        @Option(help: "Only showtimes whose id starts with this (default: all).")
        var showtimePrefix = ""
        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() throws {
            guard let url = connection.resolvedDatabase else { throw ValidationError("DATABASE_URL is not set") }
            let summary = try Verifier.verify(
                databaseURL: url,
                showtimePrefix: showtimePrefix,
                wonHolds: nil,
                collector: nil,
                logger: makeLogger()
            )
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(summary), as: UTF8.self))
            } else {
                print(summary.text())
            }
            if !summary.passed { throw ExitCode(1) }
        }
    }
}

extension BenchCommand {
    struct StubCoreCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stub-core",
            abstract: "Serve the AMQP contract straight over the core's SQL functions (no Redis, sweep or confirms): "
                + "a ceiling, and a stand-in while the core cannot serve. Runs until killed."
        )
        @OptionGroup var connection: Connection
        @Option(help: "Worker threads (each: one AMQP and one PostgreSQL connection).")
        var workers = 4
        @Option(help: "Hold TTL in seconds.")
        var holdTTL = 300

        func run() throws {
            guard let url = connection.resolvedDatabase else { throw ValidationError("DATABASE_URL is not set") }
            _ = try StubCore(
                amqpURL: connection.resolvedAMQP,
                databaseURL: url,
                workers: workers,
                holdTTLSeconds: holdTTL,
                logger: makeLogger()
            )
            print("stub-core serving")
            fflush(nil)
            while true { Thread.sleep(forTimeInterval: 3600) }
        }
    }
}

extension BenchCommand {
    struct Ping: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait until the core answers ping.request (exit 1 if it does not within --wait seconds)."
        )
        @OptionGroup var connection: Connection
        @Option(help: "Seconds to keep trying.")
        var wait = 20.0

        func run() throws {
            let deadline = ContinuousClock.now + seconds(wait)
            let configuration = try AMQPConfiguration(url: connection.resolvedAMQP)
            while ContinuousClock.now < deadline {
                if let caller = try? RPCCaller(configuration: configuration, logger: makeLogger()) {
                    defer { caller.close() }
                    if case .success = try? caller.call(.ping, PingRequest(), as: PingReply.self, timeout: .seconds(1))
                    {
                        print("ping answered")
                        return
                    }
                }
                Thread.sleep(forTimeInterval: 0.3)
            }
            print("no answer to ping.request within \(wait) s")
            throw ExitCode(1)
        }
    }
}

extension BenchCommand {
    struct Sweep: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Plant N holds expiring at the same instant and time the running core's expiry sweep "
                + "(rows marked, hold.expired events received)."
        )
        @OptionGroup var connection: Connection
        @Option(help: "Holds expiring at once.")
        var holds = 100_000
        @Option(help: "Seconds from planting to their common expiresAt.")
        var expiresIn = 5
        @Option(help: "Seconds to wait for the sweep after expiresAt.")
        var wait = 120
        @Flag(help: "Print the report as JSON.")
        var json = false

        func run() throws {
            guard let url = connection.resolvedDatabase else { throw ValidationError("DATABASE_URL is not set") }
            let report = try SweepBench.run(
                databaseURL: url,
                amqpURL: connection.resolvedAMQP,
                count: holds,
                expiresIn: .seconds(expiresIn),
                wait: .seconds(wait),
                logger: makeLogger()
            )
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.text())
            }
        }
    }
}

/// How an HTTP run authenticates: one HS256 token per virtual user (`sub` = the user, scope
/// `inventory:purchase` so the mix may purchase its own holds), minted on the user's first request.
struct TokenOptions: ParsableArguments {
    @Option(help: "Sign tokens with this HS256 secret (default: $JWT_SECRET; without either, no tokens are sent).")
    var jwtSecret: String?
    @Option(help: "The iss claim (default: $JWT_ISSUER).")
    var jwtIssuer: String?
    @Option(help: "The aud claim (default: $JWT_AUDIENCE).")
    var jwtAudience: String?
    @Flag(help: "Send no tokens even if JWT_SECRET is set (a facade with AUTH_MODE=none).")
    var noTokens = false
    @Flag(
        help: """
            Each virtual user sends X-Forwarded-For with an address of its own (10.x.y.z): many buyers \
            behind a trusted proxy (the facade's TRUSTED_PROXIES), not one client address.
            """
    )
    var forwardedForPerUser = false

    func tokens() -> BenchTokens? {
        let environment = ProcessInfo.processInfo.environment
        guard !noTokens, let secret = jwtSecret ?? environment["JWT_SECRET"], !secret.isEmpty else { return nil }
        let issuer = jwtIssuer ?? environment["JWT_ISSUER"]
        let audience = jwtAudience ?? environment["JWT_AUDIENCE"]
        let minter = TokenMinter.hs256Blocking(secret: secret)
        let ttl = 6 * 3600
        let admin =
            (try? minter.mint(
                subject: "bench-admin",
                scopes: [Scope.admin],
                ttlSeconds: ttl,
                issuer: issuer,
                audience: audience
            )) ?? ""
        var tokens = BenchTokens(admin: admin) { user in
            try minter.mint(
                subject: user,
                scopes: [Scope.purchase],
                ttlSeconds: ttl,
                issuer: issuer,
                audience: audience
            )
        }
        tokens.forwardedFor = forwardedForPerUser
        return tokens
    }
}
