import Contracts
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// How many connections the gateway holds, in total and per client address (the TCP peer's IP): every
/// TCP connection counts from accept to close, whether it has upgraded to a WebSocket, is still sending
/// its request, or asks for `/healthz`. Over either limit the connection is answered 503 once its
/// request head arrives, and closed (nginx's `limit_conn` answers the same way). Decision 0017.
final class ConnectionLimits: Sendable {
    enum Refusal: Error, Sendable, Equatable {
        case addressLimit(Int)
        case totalLimit(Int)
    }

    /// What an admitted connection holds; give it back with `release` when the connection closes.
    struct Ticket: Sendable, Equatable {
        let address: String?
    }

    private struct State {
        var total = 0
        var perAddress: [String: Int] = [:]
    }

    let maxTotal: Int
    let maxPerAddress: Int
    private let state = Mutex(State())

    init(maxTotal: Int, maxPerAddress: Int) {
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
    }

    /// A new connection from `address` (nil: not an IP peer, counted in the total only).
    func admit(address: String?) -> Result<Ticket, Refusal> {
        state.withLock { state in
            guard state.total < maxTotal else { return .failure(.totalLimit(maxTotal)) }
            if let address {
                let current = state.perAddress[address, default: 0]
                guard current < maxPerAddress else { return .failure(.addressLimit(maxPerAddress)) }
                state.perAddress[address] = current + 1
            }
            state.total += 1
            return .success(Ticket(address: address))
        }
    }

    func release(_ ticket: Ticket) {
        state.withLock { state in
            state.total -= 1
            guard let address = ticket.address, let current = state.perAddress[address] else { return }
            // Addresses with no connection left are forgotten: the table holds only open connections.
            state.perAddress[address] = current > 1 ? current - 1 : nil
        }
    }

    var counts: (total: Int, addresses: Int) {
        state.withLock { ($0.total, $0.perAddress.count) }
    }
}

/// The gateway's HTTP/1 + WebSocket channel behind a gate: counts the connection against
/// ``ConnectionLimits``, gives a connection `handshakeTimeout` to send its request head, and refuses,
/// with the contract's JSON error body, an upgrade whose `Origin` the ``OriginPolicy`` does not allow
/// (403 `FORBIDDEN`) and any request of a connection over a limit (503 `SERVICE_UNAVAILABLE`).
/// hummingbird-websocket's own refusal is a bare 400 (`ShouldUpgradeResult.dontUpgrade`), so the gate
/// sits in the pipeline between NIO's request decoder and the upgrade handler, and steps out of the way
/// once a request head has passed it.
struct GatedWebSocketChannel: ServerChildChannel {
    typealias Value = HTTP1WebSocketUpgradeChannel.Value

    let inner: HTTP1WebSocketUpgradeChannel
    let limits: ConnectionLimits
    let origins: OriginPolicy
    let handshakeTimeout: Duration
    let metrics: GatewayMetrics

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let admission = limits.admit(address: channel.remoteAddress?.ipAddress)
        if case .success(let ticket) = admission {
            channel.closeFuture.whenComplete { [limits] _ in limits.release(ticket) }
        }
        let refusal: ConnectionLimits.Refusal?
        switch admission {
        case .success: refusal = nil
        case .failure(let reason): refusal = reason
        }
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(
                UpgradeGate(
                    refusal: refusal,
                    origins: origins,
                    handshakeTimeout: handshakeTimeout,
                    metrics: metrics,
                    logger: logger
                ),
                position: .after(decoder)
            )
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// The gate itself: waits (at most the handshake timeout) for the first request head, answers it when
/// refused, else passes it on and removes itself (so that WebSocket frames never reach it).
final class UpgradeGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let refusal: ConnectionLimits.Refusal?
    private let origins: OriginPolicy
    private let handshakeTimeout: Duration
    private let metrics: GatewayMetrics
    private let logger: Logger
    private var timer: Scheduled<Void>?
    private var answered = false

    init(
        refusal: ConnectionLimits.Refusal?,
        origins: OriginPolicy,
        handshakeTimeout: Duration,
        metrics: GatewayMetrics,
        logger: Logger
    ) {
        self.refusal = refusal
        self.origins = origins
        self.handshakeTimeout = handshakeTimeout
        self.metrics = metrics
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let metrics = metrics
        // A connection that does not finish its request head in time is closed: trickling header bytes
        // holds no slot for long. One already over a limit holds no slot at all, but still a socket: it
        // gets at most 2 s to send the head its refusal answers.
        let timeout = refusal == nil ? handshakeTimeout : min(handshakeTimeout, .seconds(2))
        timer = context.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            metrics.handshakeTimeouts.increment()
            Self.closeQuietly(bound.value)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // After a refusal the rest of the request is dropped; the connection closes once the answer is out.
        guard !answered else { return }
        guard case .head(let head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        timer?.cancel()
        timer = nil
        switch refusal {
        case .addressLimit(let limit)?:
            metrics.refusedAddressLimit.increment()
            refuse(
                context,
                .serviceUnavailable,
                ErrorBody(
                    code: .serviceUnavailable,
                    message: "Too many connections from this address",
                    details: ["limit": .number(Double(limit)), "scope": "address"]
                )
            )
            return
        case .totalLimit(let limit)?:
            metrics.refusedTotalLimit.increment()
            refuse(
                context,
                .serviceUnavailable,
                ErrorBody(
                    code: .serviceUnavailable,
                    message: "The gateway is at its connection limit",
                    details: ["limit": .number(Double(limit)), "scope": "total"]
                )
            )
            return
        case nil:
            break
        }
        let isUpgrade = head.headers["upgrade"].contains { $0.lowercased() == "websocket" }
        let origin = head.headers["origin"].first
        if isUpgrade && !origins.allows(origin) {
            metrics.refusedOrigin.increment()
            logger.debug("WebSocket upgrade refused: origin not allowed", metadata: ["origin": "\(origin ?? "-")"])
            refuse(
                context,
                .forbidden,
                ErrorBody(
                    code: .forbidden,
                    message: "This origin may not open a WebSocket here",
                    details: ["origin": .string(String((origin ?? "").prefix(256)))]
                )
            )
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func refuse(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ error: ErrorBody) {
        answered = true
        let body = error.restBody()
        var headers = HTTPHeaders([
            ("Content-Type", "application/json"), ("Content-Length", "\(body.count)"), ("Connection", "close"),
        ])
        if status == .serviceUnavailable { headers.add(name: "Retry-After", value: "5") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
            promise: nil
        )
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in Self.closeQuietly(bound.value) }
    }

    /// Closes the connection as a client that hung up before its request would: NIO's upgrade handler,
    /// told that the input ended, closes it and ends the upgrade as "input closed", which Hummingbird
    /// logs at trace level. (Closing the channel from here would end it as an error, logged as one for
    /// every refused connection: a log flood an attacker could cause at will.)
    private static func closeQuietly(_ context: ChannelHandlerContext) {
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }
}
