import AMQPClient
import Contracts
import Foundation
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

let directReplyTo = "amq.rabbitmq.reply-to"

/// A hold-request-sized body for the null RPC.
let echoPayload = Array(#"{"seatIds":["s1","s2"],"showtimeId":"bench-echo-st0","userId":"bench-echo-u0"}"#.utf8)

/// The request properties INTERFACE.md asks of a caller: reply_to, correlation_id, content type, both
/// deadline forms, so the core drops what nobody waits for any more, and `user_id` = the connection's
/// login (RabbitMQ checks it; the core authorizes by it).
func rpcProperties(correlationID: String, timeout: Duration, on connection: AMQPConnection) -> AMQPProperties {
    let timeoutMs = Int64(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
    let deadline = Int64(Date().timeIntervalSince1970 * 1000) + timeoutMs
    return AMQPProperties(
        contentType: ContractHeaders.contentType,
        correlationID: correlationID,
        replyTo: directReplyTo,
        expiration: String(timeoutMs),
        userID: connection.configuration.user,
        headers: [ContractHeaders.deadline: .int(deadline)]
    )
}

/// One driver thread: owns one AMQP connection (direct reply-to), keeps `clients` requests in flight on
/// it, matches replies by correlation id, and measures each request from publish to reply.
final class AMQPLoadDriver {
    private struct Pending {
        var client: Int
        var request: BenchRequest
        var sent: ContinuousClock.Instant
    }

    private let index: Int
    private let configuration: AMQPConfiguration
    private let target: RPCTarget
    private let window: RunWindow
    private let logger: Logger
    private var clients: [VirtualClient]
    private var pending: [UInt64: Pending] = [:]
    private var nextID: UInt64 = 0
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
        while ContinuousClock.now < window.end {
            var connection: AMQPConnection?
            do {
                var configuration = self.configuration
                configuration.connectionName = "inventory-bench-\(index)"
                let opened = try AMQPConnection(configuration: configuration, logger: logger)
                connection = opened
                try opened.consume(queue: directReplyTo, noAck: true)
                try drive(opened)
                opened.close()
                return stats
            } catch {
                logger.warning("driver connection failed", metadata: ["error": "\(error)", "driver": "\(index)"])
                stats.transportErrors.append("\(error)")
                for (_, entry) in pending {
                    record(entry, BenchReply(outcome: .error, errorCode: "TRANSPORT"), at: .now)
                    clients[entry.client].reset()
                }
                pending.removeAll()
                connection?.close()
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
        return stats
    }

    private func drive(_ connection: AMQPConnection) throws(AMQPError) {
        for client in clients.indices { try send(client, on: connection) }
        var lastScan = ContinuousClock.now
        var issuing = true
        while true {
            let now = ContinuousClock.now
            if issuing && now >= window.end { issuing = false }
            if !issuing && (pending.isEmpty || now >= window.end + window.timeout) { break }
            if let event = try connection.nextEvent(timeout: .milliseconds(20)) {
                guard case .delivery(let message) = event,
                    let id = message.properties.correlationID.flatMap(UInt64.init),
                    let entry = pending.removeValue(forKey: id)
                else { continue }  // a late answer to a request already counted as timed out
                let reply = BenchReply.decodeRPC(message.body, operation: entry.request.operation, decoder: decoder)
                complete(entry, reply, on: connection, issuing: issuing)
            }
            if now - lastScan >= .milliseconds(100) {
                lastScan = now
                for (id, entry) in pending where now - entry.sent >= window.timeout {
                    pending.removeValue(forKey: id)
                    clients[entry.client].reset()
                    complete(entry, BenchReply(outcome: .timeout), on: connection, issuing: issuing)
                }
            }
        }
        stats.unanswered += pending.count
        for (_, entry) in pending { record(entry, BenchReply(outcome: .timeout), at: .now) }
        pending.removeAll()
    }

    private func complete(_ entry: Pending, _ reply: BenchReply, on connection: AMQPConnection, issuing: Bool) {
        let now = ContinuousClock.now
        record(entry, reply, at: now)
        clients[entry.client].received(reply, for: entry.request)
        if issuing && now < window.end {
            do { try send(entry.client, on: connection) } catch {
                // The next nextEvent throws the same failure; run() reconnects.
                stats.transportErrors.append("\(error)")
            }
        }
    }

    private func record(_ entry: Pending, _ reply: BenchReply, at now: ContinuousClock.Instant) {
        if case .hold(let request) = entry.request, reply.outcome == .won, let hold = reply.hold {
            stats.wonHolds.append(
                WonHold(
                    holdID: hold.holdId,
                    showtimeID: request.showtimeId,
                    seatIDs: hold.seatIds,
                    userID: request.userId
                )
            )
        }
        guard entry.sent >= window.measureStart && entry.sent < window.end else { return }
        stats.record(entry.request.operation, reply, microseconds: microseconds(from: entry.sent, to: now))
    }

    private func send(_ client: Int, on connection: AMQPConnection) throws(AMQPError) {
        let request: BenchRequest
        if case .echo = target { request = .echo(echoPayload) } else { request = clients[client].nextRequest() }
        nextID += 1
        let id = nextID
        let body: [UInt8]
        do { body = try request.body(encoder: encoder) } catch { body = [] }
        let (exchange, routingKey) = target.route(request)
        pending[id] = Pending(client: client, request: request, sent: .now)
        try connection.publish(
            exchange: exchange,
            routingKey: routingKey,
            body: body,
            properties: rpcProperties(correlationID: String(id), timeout: window.timeout, on: connection)
        )
    }
}

/// A blocking request/reply over its own connection, for provisioning and pings (not measured).
public final class RPCCaller {
    private let connection: AMQPConnection
    private var nextID = 0
    private let encoder = ContractJSON.encoder()
    private let decoder = ContractJSON.decoder()

    public init(configuration: AMQPConfiguration, logger: Logger) throws {
        connection = try AMQPConnection(configuration: configuration, logger: logger)
        try connection.consume(queue: directReplyTo, noAck: true)
    }

    public func call<Request: Encodable, Reply: Codable & Sendable>(
        _ operation: RPCOperation,
        _ request: Request,
        as: Reply.Type,
        timeout: Duration = .seconds(30)
    ) throws -> Result<Reply, ErrorBody> {
        nextID += 1
        let correlationID = "call-\(nextID)"
        try connection.publish(
            exchange: RPCOperation.exchange,
            routingKey: operation.routingKey,
            body: Array(try encoder.encode(request)),
            properties: rpcProperties(correlationID: correlationID, timeout: timeout, on: connection)
        )
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let event = try connection.nextEvent(timeout: .milliseconds(100)),
                case .delivery(let message) = event, message.properties.correlationID == correlationID
            else { continue }
            return try decoder.decode(RPCReply<Reply>.self, from: Data(message.body)).result
        }
        throw BenchError("no answer to \(operation.routingKey) within \(timeout)")
    }

    public func close() { connection.close() }
}

public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
