import AMQPClient
import Contracts
import Foundation
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
        let web = try WebSettings.load()
        let facade = try Facade(configuration: configuration, web: web, logger: logger)
        StandardStreams.printLine(StartupMessages.facadeRunning(port: facade.port))
        if facade.servesPage {
            StandardStreams.printLine("Seat map page: http://localhost:\(facade.port)/")
        }
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
    /// Whether `/` serves the seat map page (`WEB_ROOT` holds an `index.html`).
    public let servesPage: Bool
    /// Access log lines dropped because the log sink was behind (decision 0024).
    public var accessLogDropped: Int { handler.accessLogDropped }

    /// Starts the RPC client (it connects in the background, answering 503 until it has) and the daemons.
    /// With `AUTH_MODE=jwt`, a missing or unusable key throws a `ConfigurationError` naming the variable.
    /// `web`: the seat map page's files and the development token endpoint (none unless given).
    public init(configuration: ServiceConfiguration, web: WebSettings = WebSettings(), logger: Logger) throws {
        self.logger = logger
        let webEdge = try Self.webEdge(web, auth: configuration.auth, logger: logger)
        servesPage = webEdge?.files?.file(at: "/") != nil
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
                maxProxiedRequestsPerAddress: edge.maxConnectionsPerAddress,
                web: webEdge
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
            handler.stop()
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
            handler.stop()
            throw error
        }
    }

    /// The page's files (when `web.root` is a directory) and the token endpoint (when turned on; it needs
    /// `AUTH_MODE=jwt` and `JWT_SECRET`, since it signs like any HS256 token the facade accepts).
    private static func webEdge(_ web: WebSettings, auth: AuthSettings, logger: Logger) throws -> WebEdge? {
        var files: StaticFiles?
        if let root = web.root {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue {
                let loaded = try StaticFiles(root: root)
                files = loaded
                logger.info(
                    "serving the seat map page",
                    metadata: ["web.root": "\(root)", "web.files": "\(loaded.files.count)"]
                )
            } else {
                logger.warning("WEB_ROOT is not a directory: no seat map page", metadata: ["web.root": "\(root)"])
            }
        }
        var tokens: DevTokenIssuer?
        if web.devTokenEndpoint {
            guard auth.mode == .jwt, let secret = auth.jwtSecret else {
                throw ConfigurationError(
                    variable: "DEV_TOKEN_ENDPOINT",
                    source: "environment, .env.local, .env",
                    message: "the development token endpoint needs AUTH_MODE=jwt and JWT_SECRET (it signs HS256 tokens)"
                )
            }
            tokens = DevTokenIssuer(
                minter: TokenMinter.hs256Blocking(secret: secret),
                ttlSeconds: web.devTokenTTLSeconds,
                issuer: auth.jwtIssuer,
                audience: auth.jwtAudience
            )
            let warning =
                "⚠️  DEV_TOKEN_ENDPOINT=true: POST \(DevTokenIssuer.path) mints a token for any user to loopback "
                + "callers. For local development only; never deploy it."
            StandardStreams.printError(warning)
            logger.warning("\(warning)")
        }
        guard files != nil || tokens != nil else { return nil }
        return WebEdge(files: files, tokens: tokens)
    }

    /// No new work (503 with `Connection: close`), requests in flight answered (their RPCs finish or time
    /// out within `RPC_TIMEOUT_MS`), then the daemon stops and, last, the RPC client. Within 10 s.
    public func shutdown() {
        handler.beginDraining()
        daemon.shutdown(timeout: .seconds(8))
        ops.shutdown()
        limiter?.stop()
        rpc.stop(timeout: .seconds(1))
        handler.stop()
        logger.info("facade stopped")
    }
}
