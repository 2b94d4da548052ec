import AMQPClient
import Contracts
import HTTPServer
import InventoryRPCClient
import Logging
import ServiceSupport

/// `http-facade`: serves the REST routes of INTERFACE.md on `configuration.port`.
public enum HTTPFacadeApp {
    /// Prints "Inventory service running on port N", serves until `shutdown` is triggered (SIGINT/SIGTERM),
    /// answers what is in flight and returns within 10 s.
    ///
    /// Called on the main thread after SIGINT/SIGTERM were blocked, configuration loaded, logging and
    /// metrics bootstrapped. A thrown error is logged by the command line and ends the process with status 1.
    public static func run(configuration: ServiceConfiguration, logger: Logger, shutdown: ShutdownSignal) throws {
        ServiceProcess.warnIfAuthenticationDisabled(configuration.auth, logger: logger)
        let facade = try Facade(configuration: configuration, logger: logger)
        StandardStreams.printLine(StartupMessages.facadeRunning(port: facade.port))
        logger.info(
            "operations port",
            metadata: ["http.address": "\(configuration.facadeOpsBindAddress)", "http.port": "\(facade.opsPort)"]
        )
        shutdown.wait()
        facade.shutdown()
    }
}

/// The running facade: the RPC client's thread and the HTTP daemon. Tests run it in-process.
public final class Facade: Sendable {
    private let daemon: HTTPDaemon
    private let ops: OpsServer
    private let rpc: RPCClient
    private let limiter: RateLimiter?
    private let handler: FacadeHandler
    private let logger: Logger

    /// The port the daemon listens on (`PORT` 0 picks a free one).
    public var port: Int { daemon.port }
    /// The operations port (`/metrics`; `FACADE_OPS_PORT` 0 picks a free one).
    public var opsPort: Int { ops.port }
    /// The HTTP daemon's counters (connections, buffered body bytes, refusals, timeouts).
    public var httpStatistics: HTTPServerStatistics { daemon.statistics }
    /// Requests received and not answered yet.
    public var requestsInFlight: Int { daemon.inFlight }

    /// Starts the RPC client (it connects in the background, answering 503 until it has) and the daemons.
    /// With `AUTH_MODE=jwt`, a missing or unusable key throws a `ConfigurationError` naming the variable.
    public init(configuration: ServiceConfiguration, logger: Logger) throws {
        self.logger = logger
        let authentication: Authentication
        switch configuration.auth.mode {
        case .none: authentication = .disabled
        case .jwt:
            try configuration.auth.requireTokenKey()
            authentication = .jwt(try TokenVerifier.makeBlocking(settings: configuration.auth))
        }
        var amqp = try AMQPConfiguration(url: configuration.rabbitMQURL)
        // Connecting blocks the client's thread; callers never wait for it (they get 503 at once), but a
        // short bound keeps a blackholed broker from delaying reconnects and shutdown.
        amqp.connectTimeout = min(amqp.connectTimeout, .seconds(2))
        amqp.connectionName = "http-facade"
        rpc = try RPCClient(configuration: .init(amqp: amqp, whileDisconnected: .failAtOnce), logger: logger)
        let edge = configuration.edge
        limiter = edge.rateLimitEnabled ? RateLimiter(redisURL: configuration.redisURL, logger: logger) : nil
        handler = FacadeHandler(
            settings: .init(
                cors: CORSPolicy(origins: configuration.corsOrigins),
                limits: RequestLimits(maxSeatsPerHold: configuration.maxSeatsPerHold),
                rpcTimeout: configuration.rpcTimeout,
                authentication: authentication,
                ratePolicies: edge.rateLimitEnabled
                    ? RatePolicies(settings: edge, keyPrefix: edge.rateLimitKeyPrefix) : nil,
                trustedProxies: edge.trustedProxies,
                maxProxiedRequestsPerAddress: edge.maxConnectionsPerAddress
            ),
            rpc: rpc,
            limiter: limiter,
            logger: logger
        )
        rpc.start()
        limiter?.start()
        // libmicrohttpd's own limit is above ours: between the two, connections get a 503 at once rather
        // than waiting in the listen backlog.
        var http = HTTPServerConfiguration(
            port: configuration.port,
            maxBodyBytes: RequestLimits.maxBodyBytes,
            threads: 2,
            connectionLimit: edge.maxConnections + max(64, edge.maxConnections / 8),
            connectionTimeout: .seconds(edge.idleTimeoutSeconds)
        )
        http.maxConnections = edge.maxConnections
        http.maxConnectionsPerAddress = edge.maxConnectionsPerAddress
        let trusted = edge.trustedProxies
        http.exemptFromAddressLimit = { peer in trusted.contains { $0.contains(peer) } }
        http.headerTimeout = .seconds(edge.headerTimeoutSeconds)
        http.bodyTimeout = .seconds(edge.bodyTimeoutSeconds)
        http.listenBacklog = 1_024
        http.overloadResponse = HTTPResponse(
            status: 503,
            headers: [("Content-Type", ContractHeaders.contentType), ("Retry-After", "1")],
            body: ErrorBody(
                code: .serviceUnavailable,
                message: "Too many connections: try again shortly",
                details: ["reason": .string("connections"), "limit": .number(Double(edge.maxConnections))]
            ).restBody()
        )
        let limits = http
        http.rejectionResponse = { rejection in EdgeAnswers.rejection(rejection, limits: limits) }
        http.shutdownResponse = HTTPResponse(
            status: 503,
            headers: [("Content-Type", ContractHeaders.contentType)],
            body: ErrorBody(code: .serviceUnavailable, message: "The service is shutting down").restBody()
        )
        let handler = self.handler
        let edgeMetrics = EdgeMetrics()
        do {
            ops = try OpsServer(
                port: configuration.facadeOpsPort,
                bindAddress: configuration.facadeOpsBindAddress,
                logger: logger,
                beforeMetrics: { edgeMetrics.update() }
            )
        } catch {
            limiter?.stop()
            rpc.stop()
            throw error
        }
        do {
            daemon = try HTTPDaemon(configuration: http, logger: logger) { request, responder in
                handler.handle(request, responder)
            }
            edgeMetrics.attach(daemon)
        } catch {
            ops.shutdown()
            limiter?.stop()
            rpc.stop()
            throw error
        }
    }

    /// No new work (503 with `Connection: close`), requests in flight answered (their RPCs finish or time
    /// out within `RPC_TIMEOUT_MS`), then the daemon stops and, last, the RPC client. Within 10 s.
    public func shutdown() {
        handler.beginDraining()
        daemon.shutdown(timeout: .seconds(8))
        ops.shutdown()
        limiter?.stop()
        rpc.stop(timeout: .seconds(1))
        logger.info("facade stopped")
    }
}
