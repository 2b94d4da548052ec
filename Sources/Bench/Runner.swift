import AMQPClient
import Contracts
import Foundation
import Logging
import PostgresClient

public enum Transport: String, Sendable, Codable {
    case amqp, http, echo
}

/// Everything a run needs; the command line fills it.
public struct BenchOptions: Sendable {
    public var transport: Transport
    public var amqpURL: String
    /// HTTP only: the facade, or several separated by commas (`http://a:3005,http://b:3005`): driver thread
    /// `i` sends to facade `i % count`, provisioning goes to the first.
    public var httpURL: String
    public var databaseURL: String?
    public var inFlight: Int
    /// Driver threads, each owning one AMQP connection (AMQP) or `inFlight / connections` sockets (HTTP).
    public var connections: Int
    public var duration: Duration
    public var warmup: Duration
    public var timeout: Duration
    public var showtimes: Int
    public var seatsPerShowtime: Int
    public var seatsPerHold: ClosedRange<Int>
    public var shape: RushShape
    public var hotSeats: Int
    public var hotFraction: Double
    public var verify: Bool
    /// ANALYZE seat_states after provisioning (needs `databaseURL`): the planner then knows the new showtimes.
    public var analyzeAfterProvisioning = false
    /// A new user id for every hold cycle (`VirtualClient`): a crowd of buyers, not a few busy ones.
    public var buyerPerHold = false
    /// Echo only: server threads.
    public var echoServers: Int
    /// Echo only: a durable queue (a quorum queue with `queue_type=quorum`) instead of a transient classic one.
    public var echoDurableQueue = false
    public var runID: String
    /// HTTP only: the bearer tokens to send (nil: none, for a facade with `AUTH_MODE=none`).
    public var tokens: BenchTokens?

    public init(
        transport: Transport,
        amqpURL: String = "amqp://guest:guest@localhost:5672",
        httpURL: String = "http://localhost:3005",
        databaseURL: String? = nil,
        inFlight: Int = 64,
        connections: Int = 2,
        duration: Duration = .seconds(10),
        warmup: Duration = .seconds(2),
        timeout: Duration = .seconds(5),
        showtimes: Int = 20,
        seatsPerShowtime: Int = 10_000,
        seatsPerHold: ClosedRange<Int> = 1...4,
        shape: RushShape = .uniform,
        hotSeats: Int = 10,
        hotFraction: Double = 0.9,
        verify: Bool = true,
        echoServers: Int = 2,
        runID: String? = nil,
        tokens: BenchTokens? = nil
    ) {
        self.tokens = tokens
        self.transport = transport
        self.amqpURL = amqpURL
        self.httpURL = httpURL
        self.databaseURL = databaseURL
        self.inFlight = inFlight
        self.connections = connections
        self.duration = duration
        self.warmup = warmup
        self.timeout = timeout
        self.showtimes = showtimes
        self.seatsPerShowtime = seatsPerShowtime
        self.seatsPerHold = seatsPerHold
        self.shape = shape
        self.hotSeats = hotSeats
        self.hotFraction = hotFraction
        self.verify = verify
        self.echoServers = echoServers
        self.runID = runID ?? "bench-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    }

    public var showtimeIDs: [String] { (0..<showtimes).map { "\(runID)-st\($0)" } }
}

public struct BenchOutcome: Sendable {
    public var report: BenchReport
    public var stats: RunStats
    public var passed: Bool { report.verification?.passed ?? true }
}

public enum BenchRunner {
    public static func run(
        _ options: BenchOptions,
        logger: Logger,
        progress: (String) -> Void = { _ in }
    )
        throws -> BenchOutcome
    {
        let amqp = try AMQPConfiguration(url: options.amqpURL)
        let connections = max(1, min(options.connections, options.inFlight))
        let loadAtStart = loadAverage()

        // Before anything the run does can commit: the event consumer.
        var collector: EventCollector?
        if options.verify && options.transport != .echo {
            guard options.databaseURL != nil else { throw BenchError("verification needs DATABASE_URL") }
            collector = try EventCollector(configuration: amqp, showtimePrefix: options.runID + "-", logger: logger)
        }

        var echo: EchoServer?
        let target: RPCTarget
        switch options.transport {
        case .echo:
            let server = try EchoServer(
                configuration: amqp,
                threads: options.echoServers,
                durable: options.echoDurableQueue,
                logger: logger
            )
            echo = server
            target = .echo(queue: server.queue)
        case .amqp, .http:
            target = .core
            try provision(options, amqp: amqp, logger: logger)
            progress(
                "provisioned \(options.showtimes) showtimes x \(options.seatsPerShowtime) seats (\(options.runID))"
            )
            if options.analyzeAfterProvisioning, let url = options.databaseURL {
                let connection = try PostgresConnection(url: url, logger: logger)
                defer { connection.close() }
                try connection.simpleQuery("ANALYZE seat_states")
                progress("ANALYZE seat_states done")
            }
        }

        var configuration = WorkloadConfiguration(
            shape: options.shape,
            showtimeIDs: options.showtimeIDs,
            seatsPerShowtime: options.seatsPerShowtime,
            seatsPerHold: options.seatsPerHold,
            hotSeats: options.hotSeats,
            hotFraction: options.hotFraction,
            runID: options.runID
        )
        configuration.buyerPerHold = options.buyerPerHold
        let workload = configuration
        let window = RunWindow(warmup: options.warmup, duration: options.duration, timeout: options.timeout)
        let facades = try httpEndpoints(options.httpURL)
        progress("running: warm-up \(options.warmup), then \(options.duration) at \(options.inFlight) in flight")
        let perThread = onDedicatedThreads(connections, name: "bench-driver") { index -> RunStats in
            let share = options.inFlight / connections + (index < options.inFlight % connections ? 1 : 0)
            let clients = (0..<share).map { client in
                VirtualClient(
                    userID: "\(options.runID)-u\(index)-\(client)",
                    configuration: workload,
                    seed: UInt64(index) << 32 | UInt64(client) &+ 0x5EED
                )
            }
            switch options.transport {
            case .amqp, .echo:
                return AMQPLoadDriver(
                    index: index,
                    configuration: amqp,
                    target: target,
                    window: window,
                    clients: clients,
                    logger: logger
                ).run()
            case .http:
                let (host, port) = facades[index % facades.count]
                return HTTPLoadDriver(
                    index: index,
                    host: host,
                    port: port,
                    window: window,
                    clients: clients,
                    tokens: options.tokens,
                    logger: logger
                ).run()
            }
        }
        var stats = RunStats()
        for part in perThread { stats.merge(part) }
        let loadAtEnd = loadAverage()
        if let echo {
            for failure in echo.stop() { stats.transportErrors.append("echo server: \(failure)") }
        }

        var verification: VerificationSummary?
        if let collector, let databaseURL = options.databaseURL {
            progress("verifying \(stats.wonHolds.count) won holds against the database and the events")
            verification = try Verifier.verify(
                databaseURL: databaseURL,
                showtimePrefix: options.runID + "-",
                wonHolds: stats.wonHolds,
                collector: collector,
                logger: logger
            )
        }

        let seconds = window.measuredSeconds
        let rows = stats.operations.sorted { $0.key < $1.key }.map {
            BenchReport.row($0.key.rawValue, $0.value, seconds: seconds)
        }
        let report = BenchReport(
            mode: options.transport.rawValue,
            shape: options.transport == .echo ? "null-rpc" : options.shape.rawValue,
            inFlight: options.inFlight,
            connections: connections,
            durationSeconds: seconds,
            warmupSeconds: Double(options.warmup.components.seconds) + Double(options.warmup.components.attoseconds)
                / 1e18,
            showtimes: options.showtimes,
            seatsPerShowtime: options.seatsPerShowtime,
            seatsPerHold: "\(options.seatsPerHold.lowerBound)-\(options.seatsPerHold.upperBound)",
            load: "start: \(loadAtStart); end: \(loadAtEnd)",
            operations: rows,
            totalThroughputPerSecond: (rows.reduce(0) { $0 + $1.throughputPerSecond } * 10).rounded() / 10,
            unanswered: stats.unanswered,
            transportErrors: stats.transportErrors.count,
            verification: verification
        )
        return BenchOutcome(report: report, stats: stats)
    }

    /// seats.define for every showtime, 10,000 seats a request (the contract's limit).
    static func provision(_ options: BenchOptions, amqp: AMQPConfiguration, logger: Logger) throws {
        var chunk = RequestLimits.maxSeatsPerDefine
        switch options.transport {
        case .amqp, .echo:
            let caller = try RPCCaller(configuration: amqp, logger: logger)
            defer { caller.close() }
            for showtime in options.showtimeIDs {
                for start in stride(from: 1, through: options.seatsPerShowtime, by: chunk) {
                    let seats = (start...min(options.seatsPerShowtime, start + chunk - 1)).map(
                        WorkloadConfiguration.seatID
                    )
                    let numbers = start...min(options.seatsPerShowtime, start + chunk - 1)
                    let request =
                        options.shape == .bestAvailable
                        ? SeatsDefineRequest(
                            showtimeId: showtime,
                            seats: numbers.map(WorkloadConfiguration.seatDefinition)
                        )
                        : SeatsDefineRequest(showtimeId: showtime, seatIds: seats)
                    let result = try caller.call(.seatsDefine, request, as: SeatsDefined.self)
                    if case .failure(let error) = result {
                        throw BenchError("seats.define \(showtime): \(error.code.rawValue) \(error.message)")
                    }
                }
            }
        case .http:
            // The facade takes bodies up to 64 KiB: 4,000 seat ids of up to 8 characters stay well under, and 500
            // seats with rows (about 90 bytes each).
            chunk = options.shape == .bestAvailable ? 500 : 4_000
            let facades = try httpEndpoints(options.httpURL)
            let (host, port) = facades[0]
            // A facade that has just started answers 503 until its RPC client is connected and a core
            // answers ping: the first request waits for that, not for luck (every facade of the run).
            for (host, port) in facades { try awaitReady(host: host, port: port) }
            let encoder = ContractJSON.encoder()
            for showtime in options.showtimeIDs {
                for start in stride(from: 1, through: options.seatsPerShowtime, by: chunk) {
                    let seats = (start...min(options.seatsPerShowtime, start + chunk - 1)).map(
                        WorkloadConfiguration.seatID
                    )
                    struct Body: Encodable {
                        var seatIds: [String]?
                        var seats: [SeatDefinition]?
                    }
                    let numbers = start...min(options.seatsPerShowtime, start + chunk - 1)
                    let definition =
                        options.shape == .bestAvailable
                        ? Body(seats: numbers.map(WorkloadConfiguration.seatDefinition)) : Body(seatIds: seats)
                    let (status, body) = try httpCall(
                        host: host,
                        port: port,
                        method: "PUT",
                        path: "/showtimes/\(showtime)/seats",
                        body: Array(try encoder.encode(definition)),
                        headers: options.tokens.map { [("Authorization", "Bearer \($0.admin)")] } ?? []
                    )
                    guard status == 200 else {
                        throw BenchError(
                            "PUT /showtimes/\(showtime)/seats: \(status) \(String(decoding: body, as: UTF8.self))"
                        )
                    }
                }
            }
        }
    }

    /// The facades of `--facade-url`: one URL, or several separated by commas (each with its host).
    static func httpEndpoints(_ urls: String) throws -> [(String, Int)] {
        let parts = urls.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard !parts.contains(where: \.isEmpty) else { throw BenchError("an empty facade URL in \(urls)") }
        return try parts.map(hostAndPort)
    }

    static func hostAndPort(_ url: String) throws -> (String, Int) {
        guard let components = URLComponents(string: url), let host = components.host else {
            throw BenchError("not an http URL: \(url)")
        }
        return (host, components.port ?? 80)
    }
}
