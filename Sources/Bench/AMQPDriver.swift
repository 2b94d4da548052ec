import AMQPClient
import Contracts
import Foundation
import InventoryRPCClient
import Logging

/// Where an RPC request goes: the core's `inventory.rpc` exchange, or an echo queue through the default
/// exchange.
public enum RPCTarget: Sendable {
    case core
    case echo(queue: String)

    func route(_ request: BenchRequest) -> (exchange: String, routingKey: String) {
        switch self {
        case .core: (RPCOperation.exchange, request.rpcOperation?.routingKey ?? "")
        case .echo(let queue): ("", queue)
        }
    }
}

/// A hold-request-sized body for the null RPC.
let echoPayload = Array(#"{"seatIds":["s1","s2"],"showtimeId":"bench-echo-st0","userId":"bench-echo-u0"}"#.utf8)

/// One driver thread: drives one `RPCChannel` (one AMQP connection, direct reply-to), keeps `clients`
/// requests in flight on it — each reply's completion sends that client's next request at once, on the
/// same thread — and measures each request from send to answer. Correlation and deadlines are the
/// channel's.
final class AMQPLoadDriver {
    private let index: Int
    private let configuration: AMQPConfiguration
    private let target: RPCTarget
    private let window: RunWindow
    private let logger: Logger
    private var clients: [VirtualClient]
    private var inFlight = 0
    /// Set when the run gives up on the requests still in flight: their answers count as unanswered.
    private var abandoning = false
    private var stats = RunStats()
    private let encoder = ContractJSON.encoder()
    private let decoder = ContractJSON.decoder()

    init(
        index: Int,
        configuration: AMQPConfiguration,
        target: RPCTarget,
        window: RunWindow,
        clients: [VirtualClient],
        logger: Logger
    ) {
        self.index = index
        self.configuration = configuration
        self.target = target
        self.window = window
        self.clients = clients
        self.logger = logger
    }

    func run() -> RunStats {
        var amqp = configuration
        amqp.connectionName = "inventory-bench-\(index)"
        let declareExchange: String?
        switch target {
        case .core: declareExchange = RPCOperation.exchange
        case .echo: declareExchange = nil
        }
        let channel = RPCChannel(configuration: .init(amqp: amqp, declareExchange: declareExchange), logger: logger)
        defer { channel.close() }
        while ContinuousClock.now < window.end {
            do throws(AMQPError) {
                try channel.connect()
                try drive(channel)
                return stats
            } catch {
                // The calls in flight have failed `connectionLost` (counted as transport errors).
                logger.warning("driver connection failed", metadata: ["error": "\(error)", "driver": "\(index)"])
                stats.transportErrors.append("\(error)")
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
        return stats
    }

    private func drive(_ channel: RPCChannel) throws(AMQPError) {
        for client in clients.indices { send(client, on: channel) }
        while true {
            let now = ContinuousClock.now
            if inFlight == 0 && now >= window.end { break }
            if now >= window.end + window.timeout { break }
            try channel.poll(timeout: .milliseconds(20))
        }
        stats.unanswered += inFlight
        abandoning = true
        channel.close()
    }

    private func send(_ client: Int, on channel: RPCChannel) {
        let request: BenchRequest
        if case .echo = target { request = .echo(echoPayload) } else { request = clients[client].nextRequest() }
        let body: [UInt8]
        do { body = try request.body(encoder: encoder) } catch { body = [] }
        let (exchange, routingKey) = target.route(request)
        let sent = ContinuousClock.now
        inFlight += 1
        channel.send(
            RPCRequest(exchange: exchange, routingKey: routingKey, body: body, timeout: window.timeout)
        ) { [unowned self, unowned channel] outcome in
            inFlight -= 1
            let reply: BenchReply
            switch outcome {
            case .success(let response):
                reply = BenchReply.decodeRPC(response.body, operation: request.operation, decoder: decoder)
            case .failure(.timedOut), .failure(.stopped):
                reply = BenchReply(outcome: .timeout)
            case .failure(.connectionLost), .failure(.notConnected):
                // drive() reconnects and sends for every client again.
                record(request, sent: sent, BenchReply(outcome: .error, errorCode: "TRANSPORT"), at: .now)
                clients[client].reset()
                return
            case .failure(.unroutable):
                reply = BenchReply(outcome: .error, errorCode: "UNROUTABLE")
            case .failure(.duplicateCorrelationID):
                reply = BenchReply(outcome: .error, errorCode: "DUPLICATE_CORRELATION_ID")
            }
            let now = ContinuousClock.now
            record(request, sent: sent, reply, at: now)
            if reply.outcome == .timeout { clients[client].reset() }
            if abandoning { return }
            clients[client].received(reply, for: request)
            if now < window.end { send(client, on: channel) }
        }
    }

    private func record(
        _ request: BenchRequest,
        sent: ContinuousClock.Instant,
        _ reply: BenchReply,
        at now: ContinuousClock.Instant
    ) {
        if let hold = request.holdRequester, reply.outcome == .won, let won = reply.hold {
            stats.wonHolds.append(
                WonHold(
                    holdID: won.holdId,
                    showtimeID: hold.showtimeId,
                    seatIDs: won.seatIds,
                    userID: hold.userId
                )
            )
        }
        guard sent >= window.measureStart && sent < window.end else { return }
        stats.record(request.operation, reply, microseconds: microseconds(from: sent, to: now))
    }
}

/// A blocking request/reply over its own connection, for provisioning and pings (not measured): the
/// shared RPC channel, with the body encoded and the reply decoded.
public final class RPCCaller {
    private let channel: RPCChannel
    private let encoder = ContractJSON.encoder()
    private let decoder = ContractJSON.decoder()

    public init(configuration: AMQPConfiguration, logger: Logger) throws {
        channel = RPCChannel(configuration: .init(amqp: configuration), logger: logger)
        try channel.connect()
    }

    public func call<Request: Encodable, Reply: Codable & Sendable>(
        _ operation: RPCOperation,
        _ request: Request,
        as: Reply.Type,
        timeout: Duration = .seconds(30)
    ) throws -> Result<Reply, ErrorBody> {
        let body = Array(try encoder.encode(request))
        switch try channel.call(RPCRequest(operation, body: body, timeout: timeout)) {
        case .success(let reply):
            return try decoder.decode(RPCReply<Reply>.self, from: Data(reply.body)).result
        case .failure(let failure):
            throw BenchError("no answer to \(operation.routingKey) within \(timeout): \(failure)")
        }
    }

    public func close() { channel.close() }
}

public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
