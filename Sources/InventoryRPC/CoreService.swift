import AMQPClient
import Contracts
import Foundation
import HTTPServer
import Logging
import PostgresClient
import RedisClient
import ServiceSupport
import Synchronization

/// The core as one object: connects to its dependencies, prints the start-up lines, runs the RPC workers,
/// the outbox relay, the expiry timer and the ops HTTP port on their own threads, and stops them in order.
///
/// `inventory-rpc serve` runs one per process; tests run one (or two) in-process against their own vhost,
/// database and Redis.
public final class CoreService: Sendable {
    public let configuration: CoreConfiguration
    private let logger: Logger
    private let shutdown: ShutdownSignal
    private let metricsExposition: (@Sendable () -> [UInt8])?
    private let threads = ThreadGroup()
    private let health = CoreHealth()
    private let circuit: RedisCircuit
    private let metrics = ServiceMetrics()
    private let ops = Mutex<HTTPDaemon?>(nil)
    private let stopped = Mutex(false)

    /// - Parameters:
    ///   - shutdown: triggering it stops the core (SIGINT/SIGTERM in `serve`).
    ///   - metricsExposition: the Prometheus text `/metrics` serves (nil: an empty body).
    public init(
        configuration: CoreConfiguration,
        logger: Logger,
        shutdown: ShutdownSignal = ShutdownSignal(),
        metricsExposition: (@Sendable () -> [UInt8])? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.shutdown = shutdown
        self.metricsExposition = metricsExposition
        self.circuit = RedisCircuit(logger: logger, metrics: metrics)
    }

    /// The bound ops port, once started (nil when turned off).
    public var opsPort: Int? { ops.withLock { $0?.port } }

    /// Whether at least one worker reaches both the database and the broker (`/readyz`).
    public var isReady: Bool { health.isReady }

    /// Connects to each dependency in turn (waiting with back-off while one is down, printing the seed's
    /// line as each answers), then starts every thread. Returns false if shutdown came first.
    @discardableResult
    public func start() throws -> Bool {
        warnIfPermissive()
        guard waitForDatabase() else { return false }
        announce(StartupMessages.databaseLoaded)
        checkRedis()
        guard waitForBroker() else { return false }
        announce(StartupMessages.rabbitMQConnected)

        // The ops port first: if it cannot be bound (another instance on this host?) nothing has started yet.
        try startOps()
        let context = CoreContext(
            configuration: configuration,
            logger: logger,
            metrics: metrics,
            health: health,
            circuit: circuit,
            stop: shutdown
        )
        for index in 0..<max(1, configuration.workers) {
            threads.spawn(name: "rpc-worker-\(index)") { RPCWorker(index: index, context: context).run() }
        }
        threads.spawn(name: "outbox-relay") { OutboxRelay(context: context).run() }
        threads.spawn(name: "expiry-timer") { ExpiryTimer(context: context).run() }
        announce(StartupMessages.expiryWorkerStarted(intervalSeconds: configuration.expiryIntervalSeconds))
        announce(StartupMessages.holdTTL(seconds: configuration.holdTTLSeconds))
        return true
    }

    /// Blocks until the shutdown signal, then stops.
    public func run() throws {
        guard try start() else {
            stop()
            return
        }
        shutdown.wait()
        stop()
    }

    /// Stops taking work, lets each worker answer what it already received, stops the relay and the timer,
    /// closes every connection and the ops port. Returns within `timeout` (threads still busy then are
    /// abandoned with a log line; their unacked messages go back to the broker when the process exits).
    public func stop(timeout: Duration = .seconds(8)) {
        let first = stopped.withLock { stopped -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        shutdown.trigger()
        if !threads.join(timeout: timeout) {
            logger.warning("threads still busy at shutdown", metadata: ["count": "\(threads.count)"])
        }
        let daemon = ops.withLock { daemon -> HTTPDaemon? in
            defer { daemon = nil }
            return daemon
        }
        daemon?.shutdown(timeout: .seconds(1))
        logger.info("core stopped")
    }

    // MARK: Start-up

    /// The warning line for a table that grants `guest` (the account whose password everyone knows)
    /// anything: fine for tests and local development, never for a deployment.
    static func permissiveWarning(_ permissions: BrokerPermissions) -> String? {
        guard permissions.grantsGuest else { return nil }
        return "⚠️  RPC_PERMISSIONS grants the broker user guest (whose password everyone knows) RPC operations: "
            + "anyone who can reach the broker may call them. For tests and local development only."
    }

    private func warnIfPermissive() {
        logger.info("RPC permissions", metadata: ["RPC_PERMISSIONS": "\(configuration.permissions)"])
        guard let warning = Self.permissiveWarning(configuration.permissions) else { return }
        if configuration.printsStartupLines { StandardStreams.printError(warning) }
        logger.warning("guest may call RPC operations", metadata: ["RPC_PERMISSIONS": "\(configuration.permissions)"])
    }

    private func announce(_ line: String) {
        if configuration.printsStartupLines {
            StandardStreams.printLine(line)
        } else {
            logger.debug("\(line)")
        }
    }

    private func waitForDatabase() -> Bool {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        var warned = false
        while !shutdown.isTriggered {
            do {
                let connection = try PostgresConnection(url: configuration.databaseURL, logger: logger)
                connection.close()
                return true
            } catch {
                if !warned {
                    logger.warning("database unreachable; retrying with back-off", metadata: ["error": "\(error)"])
                    warned = true
                }
                shutdown.wait(timeout: backoff.nextDelay())
            }
        }
        return false
    }

    /// Redis is optional: without it holds run on the database alone, and the workers keep probing it.
    private func checkRedis() {
        do {
            let connection = try RedisConnection(
                url: configuration.redisURL,
                commandTimeout: configuration.redisCommandTimeout,
                logger: logger
            )
            defer { connection.close() }
            try connection.command(["PING"])
            announce(StartupMessages.redisConnected)
        } catch {
            circuit.failed(error)
        }
    }

    private func waitForBroker() -> Bool {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        var warned = false
        while !shutdown.isTriggered {
            do {
                var amqp = try AMQPConfiguration(url: configuration.rabbitmqURL)
                amqp.connectionName = "inventory-rpc start-up"
                let connection = try AMQPConnection(configuration: amqp, logger: logger)
                defer { connection.close() }
                try declareTopology(connection)
                return true
            } catch {
                if !warned {
                    logger.warning("broker unreachable; retrying with back-off", metadata: ["error": "\(error)"])
                    warned = true
                }
                shutdown.wait(timeout: backoff.nextDelay())
            }
        }
        return false
    }

    private func startOps() throws {
        guard let port = configuration.opsPort else { return }
        let health = self.health
        let exposition = metricsExposition
        let daemon: HTTPDaemon
        do {
            daemon = try makeOpsDaemon(port: port, health: health, exposition: exposition)
        } catch {
            throw OpsPortError(port: port, underlying: "\(error)")
        }
        ops.withLock { $0 = daemon }
        logger.info(
            "ops HTTP port open",
            metadata: ["port": "\(daemon.port)", "address": "\(configuration.opsBindAddress)"]
        )
    }

    private func makeOpsDaemon(
        port: Int,
        health: CoreHealth,
        exposition: (@Sendable () -> [UInt8])?
    ) throws
        -> HTTPDaemon
    {
        try HTTPDaemon(
            configuration: HTTPServerConfiguration(
                port: port,
                bindAddress: configuration.opsBindAddress,
                maxBodyBytes: 4096,
                threads: 1
            ),
            logger: logger
        ) { request, responder in
            responder.respond(Self.opsResponse(request, health: health, exposition: exposition))
        }
    }

    static func opsResponse(
        _ request: HTTPRequest,
        health: CoreHealth,
        exposition: (@Sendable () -> [UInt8])?
    )
        -> HTTPResponse
    {
        let json = [("Content-Type", "application/json")]
        guard request.method == "GET" || request.method == "HEAD" else {
            return HTTPResponse(
                status: 405,
                headers: json + [("Allow", "GET, HEAD")],
                body: Array(#"{"error":{"code":"METHOD_NOT_ALLOWED","message":"Use GET"}}"#.utf8)
            )
        }
        switch request.path {
        case "/healthz":
            return HTTPResponse(status: 200, headers: json, body: Array(#"{"status":"ok"}"#.utf8))
        case "/readyz":
            let database = health.isUp(.database)
            let broker = health.isUp(.broker)
            let body =
                #"{"status":"\#(database && broker ? "ready" : "not ready")","database":\#(database),"broker":\#(broker)}"#
            return HTTPResponse(status: health.isReady ? 200 : 503, headers: json, body: Array(body.utf8))
        case "/metrics":
            return HTTPResponse(
                status: 200,
                headers: [("Content-Type", MetricsSetup.contentType)],
                body: exposition?() ?? []
            )
        default:
            return HTTPResponse(
                status: 404,
                headers: json,
                body: Array(#"{"error":{"code":"NOT_FOUND","message":"No such route"}}"#.utf8)
            )
        }
    }
}

/// The ops port could not be opened: the process stops before it starts anything.
struct OpsPortError: Error, CustomStringConvertible {
    var port: Int
    var underlying: String
    var description: String {
        "cannot open the ops HTTP port \(port) (OPS_PORT; in use by another instance on this host?): \(underlying)"
    }
}
