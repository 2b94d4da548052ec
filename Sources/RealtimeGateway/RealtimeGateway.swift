import AMQPClient
import Contracts
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle
import ServiceSupport

/// The realtime gateway: WebSocket clients follow showtimes and get their seat changes as they happen.
///
/// Two worlds meet here. The AMQP side is two dedicated threads with blocking rabbitmq-c connections
/// (``EventConsumer``: the event feed; ``AvailabilityRPC``: snapshots); the WebSocket side runs on
/// Hummingbird's event loops. They meet in the ``Hub``, a lock-protected registry whose every operation
/// is short and non-blocking: the consumer thread fans each event into the per-client bounded queues,
/// and each client's writer task drains its own queue. A slow client fills only its own queue and is
/// dropped when it is full; a client whose socket stops taking data is dropped after `writeTimeout`.
///
/// A `Service` (swift-service-lifecycle): `run()` serves until the enclosing `ServiceGroup` shuts down
/// gracefully (or the task is cancelled), then closes the WebSockets and stops the AMQP threads.
public final class RealtimeGateway: Service, Sendable {
    public let configuration: GatewayConfiguration
    public let metrics = GatewayMetrics()
    private let amqp: AMQPConfiguration
    private let logger: Logger
    private let onListening: @Sendable (Int) async -> Void

    /// - Parameter onListening: called with the bound port once the server accepts connections.
    public init(
        configuration: GatewayConfiguration,
        logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws(AMQPError) {
        self.configuration = configuration
        var amqp = try AMQPConfiguration(url: configuration.rabbitMQURL)
        amqp.connectionName = configuration.connectionName
        self.amqp = amqp
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let rpc = try AvailabilityRPC(amqp: amqp, timeout: configuration.rpcTimeout, logger: logger)
        let hub = Hub(
            metrics: metrics,
            availability: rpc,
            clientBufferSize: configuration.clientBufferSize,
            maxSubscriptionsPerClient: configuration.maxSubscriptionsPerClient,
            snapshotReuse: configuration.snapshotReuse,
            maxPendingSnapshots: configuration.maxPendingSnapshots,
            logger: logger
        )
        let consumer = EventConsumer(
            amqp: amqp,
            hub: hub,
            deduplicationCapacity: configuration.deduplicationCapacity,
            logger: logger
        )

        let app = Application(
            router: Self.router(hub: hub, metrics: metrics),
            server: Self.server(configuration: configuration, hub: hub, metrics: metrics, logger: logger),
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: nil,
                backlog: 1024
            ),
            onServerRunning: { [onListening, logger] channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("realtime gateway listening", metadata: ["port": "\(port)"])
                await onListening(port)
            },
            logger: logger
        )

        let writeTimeout = configuration.writeTimeout
        var failure: (any Error)?
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // The watchdog for clients whose socket stopped taking data: their writer is stuck.
                    while !Task.isCancelled {
                        try await Task.sleep(for: .milliseconds(500))
                        hub.dropStalledWriters(olderThan: writeTimeout, now: .now)
                    }
                }
                try await app.run()
                group.cancelAll()
            }
        } catch is CancellationError {
            // Stopping.
        } catch {
            // The server failed (a port in use, say): the AMQP threads stop all the same.
            failure = error
        }
        for client in hub.clients { client.finish() }
        await consumer.shutdown()
        await rpc.shutdown()
        if let failure { throw failure }
        logger.info("realtime gateway stopped")
    }

    // MARK: HTTP

    static func router(hub: Hub, metrics: GatewayMetrics) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("healthz") { _, _ -> Response in
            let state = metrics.snapshot()
            let body =
                #"{"broker":"\#(state.brokerConnected ? "up" : "down")","connections":\#(state.connections),"status":"ok"}"#
            return Self.json(.ok, body)
        }
        router.get("readyz") { _, _ -> Response in
            metrics.snapshot().brokerConnected
                ? Self.json(.ok, #"{"status":"ready"}"#)
                : Self.json(.serviceUnavailable, #"{"status":"broker unreachable"}"#)
        }
        router.get("metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = MetricsSetup.contentType
            return Response(
                status: .ok,
                headers: headers,
                body: .init(byteBuffer: ByteBuffer(bytes: MetricsSetup.exposition()))
            )
        }
        return router
    }

    private static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    // MARK: WebSocket

    /// HTTP/1 with the WebSocket upgrade, behind the gate of connection limits, handshake timeout and
    /// `Origin` check (``GatedWebSocketChannel``).
    static func server(
        configuration: GatewayConfiguration,
        hub: Hub,
        metrics: GatewayMetrics,
        logger: Logger
    ) -> HTTPServerBuilder {
        let limits = ConnectionLimits(
            maxTotal: configuration.maxConnections,
            maxPerAddress: configuration.maxConnectionsPerAddress
        )
        let origins = OriginPolicy(origins: configuration.allowedOrigins)
        let channelConfiguration = HTTP1WebSocketUpgradeChannel.Configuration(
            // An HTTP keep-alive connection (a health probe's) idle this long is closed.
            http1: .init(idleTimeout: TimeAmount(configuration.handshakeTimeout)),
            ws: .init(
                maxFrameSize: 16_384,
                autoPing: .enabled(timePeriod: configuration.pingInterval),
                closeTimeout: .seconds(5)
            )
        )
        return HTTPServerBuilder { responder in
            GatedWebSocketChannel(
                inner: HTTP1WebSocketUpgradeChannel(
                    responder: responder,
                    configuration: channelConfiguration
                ) { request, channel, _ in
                    shouldUpgrade(
                        request,
                        channel: channel,
                        hub: hub,
                        configuration: configuration,
                        logger: logger
                    )
                },
                limits: limits,
                origins: origins,
                handshakeTimeout: configuration.handshakeTimeout,
                metrics: metrics
            )
        }
    }

    /// WebSockets on `/` (the seed's `ws://host:3011?showtimeId=...`) and `/ws`; other paths are HTTP.
    static func shouldUpgrade(
        _ request: HTTPRequest,
        channel: any Channel,
        hub: Hub,
        configuration: GatewayConfiguration,
        logger: Logger
    ) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let sendBuffer = configuration.socketSendBuffer
        let uri = URI(request.path ?? "/")
        guard uri.path == "/" || uri.path == "/ws" else { return .dontUpgrade }
        // A fixed send buffer instead of the kernel's autotuning (up to 4 MiB on loopback): bounded memory
        // per client, and a client that stops reading stalls its writer soon enough to be noticed.
        channel.setOption(ChannelOptions.socketOption(.so_sndbuf), value: SocketOptionValue(sendBuffer))
            .whenFailure { error in logger.debug("SO_SNDBUF not set", metadata: ["error": "\(error)"]) }
        let initial = uri.queryParameters["showtimeId"].map { showtimeId -> Result<String, ErrorBody> in
            let showtimeId = String(showtimeId)
            if let problem = Identifier.problem(showtimeId, field: "showtimeId") {
                return .failure(.validation([problem]))
            }
            return .success(showtimeId)
        }
        return .upgrade([:]) { inbound, outbound, _ in
            await serve(
                inbound: inbound,
                outbound: outbound,
                channel: channel,
                initial: initial,
                hub: hub,
                budget: MessageBudget(rate: configuration.maxMessagesPerSecond, burst: configuration.messageBurst),
                logger: logger
            )
        }
    }

    static func serve(
        inbound: WebSocketInboundStream,
        outbound: WebSocketOutboundWriter,
        channel: any Channel,
        initial: Result<String, ErrorBody>?,
        hub: Hub,
        budget: MessageBudget<ContinuousClock.Instant>,
        logger: Logger
    ) async {
        var budget = budget
        // `isWritable` is safe from any thread (an atomic in NIO's socket channels).
        let client = hub.connect(closeChannel: { channel.close(promise: nil) }, isWritable: { channel.isWritable })
        defer { hub.disconnect(client) }
        switch initial {
        case .success(let showtimeId): hub.subscribe(client, to: showtimeId)
        case .failure(let error): client.send(ServerMessage.error(error))
        case nil: break
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await text in client.outbound {
                    client.writeStarted(at: .now)
                    do {
                        // Fragmented into frames of at most 16 KiB: a 10,000-seat snapshot is about
                        // 450 KB, more than many clients take in one frame.
                        try await outbound.writeTextMessage(text)
                    } catch {
                        break
                    }
                    client.writeFinished()
                }
            }
            do {
                for try await message in inbound.messages(maxSize: 16_384) {
                    guard budget.take(now: .now) else {
                        // A flood: closed before its messages cost any parsing (decision 0017).
                        hub.metrics.droppedMessageRate.increment()
                        logger.info(
                            "disconnected a client that sends too many messages",
                            metadata: ["client.id": "\(client.id)", "limit": "\(budget.rate)"]
                        )
                        try? await outbound.close(.policyViolation, reason: "too many messages")
                        break
                    }
                    handle(message, from: client, hub: hub)
                }
            } catch {
                logger.debug("WebSocket read ended", metadata: ["client.id": "\(client.id)", "error": "\(error)"])
            }
            client.finish()
            group.cancelAll()
        }
    }

    static func handle(_ message: WebSocketMessage, from client: ClientConnection, hub: Hub) {
        guard case .text(let text) = message else {
            client.send(
                ServerMessage.error(
                    .validation([
                        ValidationProblem(field: "$", rule: .type, message: "Send JSON text messages, not binary")
                    ])
                )
            )
            return
        }
        switch ClientRequest.parse(text) {
        case .success(.subscribe(let showtimeId)): hub.subscribe(client, to: showtimeId)
        case .success(.unsubscribe(let showtimeId)): hub.unsubscribe(client, from: showtimeId)
        case .success(.ping): client.send(ServerMessage.pong)
        case .failure(let error): client.send(ServerMessage.error(error))
        }
    }
}
