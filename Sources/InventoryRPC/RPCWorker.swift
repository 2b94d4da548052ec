import AMQPClient
import Contracts
import Foundation
import Logging
import ServiceSupport

/// Declares the RPC exchange, one durable queue per operation bound with its routing key, and the events
/// exchange. Idempotent; every worker runs it on (re)connect so a broker that lost its state heals.
func declareTopology(_ connection: AMQPConnection) throws(AMQPError) {
    try connection.declareExchange(RPCOperation.exchange, type: .direct, durable: true)
    for operation in RPCOperation.allCases {
        try connection.declareQueue(operation.queueName, durable: true)
        try connection.bindQueue(operation.queueName, exchange: RPCOperation.exchange, routingKey: operation.routingKey)
    }
    try connection.declareExchange(EventType.exchange, type: .topic, durable: true)
}

/// Things every thread of one core shares. All of it is `Sendable`.
struct CoreContext: Sendable {
    var configuration: CoreConfiguration
    var logger: Logger
    var metrics: ServiceMetrics
    var health: CoreHealth
    var circuit: RedisCircuit
    var stop: ShutdownSignal
}

/// One RPC worker: a dedicated thread owning one broker, one database and one Redis connection, taking
/// one message at a time from all seven queues.
///
/// Per message: no `reply_to`, no `correlation_id`, or a `reply_to` that is not the caller's (`ReplyAddress`)
/// → ack, count and log, never act (decision 0015); a body over `MAX_REQUEST_BYTES` → answered
/// `PAYLOAD_TOO_LARGE`, never read; past `x-deadline` → ack and drop without acting; otherwise act, publish the
/// reply, and only then ack. If the reply cannot be published the broker connection is
/// gone, the message is still unacked and the broker redelivers it (at least once; a hold with an
/// idempotency key replays).
final class RPCWorker {
    private let name: String
    private let context: CoreContext
    private var logger: Logger
    private let handler: RequestHandler
    private var connection: AMQPConnection?
    private var operations: [String: RPCOperation] = [:]
    private var brokerLost = false

    init(index: Int, context: CoreContext) {
        let name = "rpc-worker-\(index)"
        self.name = name
        self.context = context
        var logger = context.logger
        logger[metadataKey: "thread"] = "\(name)"
        self.logger = logger
        let database = DatabaseSession(
            url: context.configuration.databaseURL,
            owner: name,
            health: context.health,
            logger: logger
        )
        let locks = SeatLocks(
            url: context.configuration.redisURL,
            commandTimeout: context.configuration.redisCommandTimeout,
            circuit: context.circuit,
            metrics: context.metrics,
            owner: name,
            logger: logger
        )
        self.handler = RequestHandler(
            database: database,
            locks: locks,
            configuration: context.configuration,
            metrics: context.metrics
        )
    }

    /// The thread's body: returns after the stop signal, once in-flight messages are answered.
    func run() {
        var retry = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        _ = handler.database.currentStore()
        while !context.stop.isTriggered {
            guard let connection = connectedBroker(retry: &retry) else { continue }
            if handler.database.store == nil { _ = handler.database.currentStore() }
            do {
                var large = false
                if let event = try connection.nextEvent(timeout: .milliseconds(250)),
                    case .delivery(let message) = event
                {
                    large = message.bodySize >= Self.largeRequestBytes
                    if isHold(message) {
                        // Group commit (decision 0022): the holds already delivered are decided together. Only
                        // what is waiting now joins: a request alone is never delayed waiting for company.
                        var holds = [message]
                        var others: [AMQPMessage] = []
                        while holds.count + others.count < Int(context.configuration.prefetch),
                            let next = try connection.nextEvent(timeout: .zero),
                            case .delivery(let more) = next
                        {
                            large = large || more.bodySize >= Self.largeRequestBytes
                            if isHold(more) { holds.append(more) } else { others.append(more) }
                        }
                        try processHolds(holds, on: connection)
                        for other in others { try process(other, on: connection) }
                    } else {
                        try process(message, on: connection)
                    }
                }
                // Once the message itself is gone too.
                if large { Self.returnFreedMemory() }
            } catch {
                dropBroker(error)
            }
        }
        drainAndClose()
    }

    private func connectedBroker(retry: inout Backoff) -> AMQPConnection? {
        if let connection, connection.isOpen { return connection }
        if connection != nil { dropBroker(ClosedConnection()) }
        do {
            var configuration = try AMQPConfiguration(url: context.configuration.rabbitmqURL)
            configuration.connectionName = "inventory-rpc \(name)"
            let connection = try AMQPConnection(configuration: configuration, logger: logger)
            // A request body over the limit is answered without being read into memory (decision 0015).
            connection.maxBodySize = context.configuration.maxRequestBytes
            try declareTopology(connection)
            // One limit for the worker's consumers together (one per operation): what a worker holds beyond the request it is
            // deciding waits behind that request, so it is kept small; the rest waits in the queues for any
            // free worker (decision 0013).
            try connection.setPrefetch(context.configuration.prefetch, perChannel: true)
            var operations: [String: RPCOperation] = [:]
            for operation in RPCOperation.allCases {
                let tag = try connection.consume(queue: operation.queueName, noAck: false)
                operations[tag] = operation
            }
            self.connection = connection
            self.operations = operations
            retry.reset()
            context.health.reportUp(.broker, owner: name)
            if brokerLost {
                logger.info("broker reconnected; consuming again")
                brokerLost = false
            }
            return connection
        } catch {
            if !brokerLost {
                logger.warning("broker unreachable; retrying with back-off", metadata: ["error": "\(error)"])
                brokerLost = true
            } else {
                logger.debug("broker still unreachable", metadata: ["error": "\(error)"])
            }
            context.health.reportDown(.broker, owner: name)
            context.stop.wait(timeout: retry.nextDelay())
            return nil
        }
    }

    private func dropBroker(_ error: any Error) {
        if !brokerLost {
            logger.warning("broker connection lost; reconnecting with back-off", metadata: ["error": "\(error)"])
            brokerLost = true
        }
        connection?.close()
        connection = nil
        operations = [:]
        context.health.reportDown(.broker, owner: name)
    }

    private func isHold(_ message: AMQPMessage) -> Bool {
        (operations[message.consumerTag] ?? RPCOperation(rawValue: message.routingKey)) == .hold
    }

    /// What the checks every request passes first decided.
    private enum Admission {
        /// Answered without acting.
        case answer(RPCResponse)
        /// Act on it for this caller.
        case act(Caller, DeliveryContext)
    }

    /// One request taken from the broker, on its way through the worker.
    private struct Taken {
        var message: AMQPMessage
        var operation: RPCOperation
        var replyTo: String
        var logger: Logger
        var started: ContinuousClock.Instant
    }

    private func process(_ message: AMQPMessage, on connection: AMQPConnection) throws(AMQPError) {
        guard let (taken, admission) = try admit(message, on: connection) else { return }
        switch admission {
        case .answer(let response):
            try reply(response, to: taken, on: connection)
        case .act(let caller, let delivery):
            let response: RPCResponse
            do {
                response = try handler.handle(
                    taken.operation,
                    body: message.body,
                    headers: message.properties.headers,
                    caller: caller,
                    delivery: delivery,
                    logger: taken.logger
                )
            } catch let error as DeadlinePassedInDatabase {
                try noAnswer(taken, deadline: error.deadline, on: connection)
                return
            } catch {
                response = unexpected(error, taken)
            }
            try reply(response, to: taken, on: connection)
        }
    }

    /// Hold requests delivered together: decided in one transaction (`RequestHandler.holds`), each answered
    /// after the commit; a request whose locks were busy is decided alone once the others are answered.
    private func processHolds(_ messages: [AMQPMessage], on connection: AMQPConnection) throws(AMQPError) {
        var acting: [(taken: Taken, call: HoldCall)] = []
        for message in messages {
            guard let (taken, admission) = try admit(message, on: connection) else { continue }
            switch admission {
            case .answer(let response): try reply(response, to: taken, on: connection)
            case .act(let caller, let delivery):
                acting.append(
                    (taken, HoldCall(body: message.body, headers: message.properties.headers, caller: caller, delivery: delivery))
                )
            }
        }
        guard !acting.isEmpty else { return }
        context.metrics.holdBatch(size: acting.count)
        let answers = handler.holds(acting.map(\.call), wait: acting.count == 1)
        var deferred: [(taken: Taken, hold: PendingHold)] = []
        for (entry, answer) in zip(acting, answers) {
            if case .deferred(let hold) = answer {
                deferred.append((entry.taken, hold))
            } else {
                try finish(answer, entry.taken, on: connection)
            }
        }
        if !deferred.isEmpty { context.metrics.holdsDeferred(deferred.count) }
        for entry in deferred {
            try finish(handler.decideAlone(entry.hold), entry.taken, on: connection)
        }
    }

    private func finish(_ answer: HoldAnswer, _ taken: Taken, on connection: AMQPConnection) throws(AMQPError) {
        switch answer {
        case .response(let response): try reply(response, to: taken, on: connection)
        case .noAnswer(let deadline): try noAnswer(taken, deadline: deadline, on: connection)
        case .failed(let error): try reply(unexpected(error, taken), to: taken, on: connection)
        case .deferred: try reply(RequestHandler.unavailable, to: taken, on: connection)
        }
    }

    /// Rolled back by its deadline: nothing happened, and the caller was already told it timed out.
    private func noAnswer(_ taken: Taken, deadline: Int64, on connection: AMQPConnection) throws(AMQPError) {
        context.metrics.dropped(reason: "deadline_database")
        taken.logger.info(
            "transaction stopped by the request's deadline; rolled back, not answered",
            metadata: ["deadline": "\(deadline)"]
        )
        try connection.ack(deliveryTag: taken.message.deliveryTag)
    }

    private func unexpected(_ error: any Error, _ taken: Taken) -> RPCResponse {
        taken.logger.error(
            "unexpected error; answered INTERNAL",
            metadata: [
                "routing_key": "\(taken.message.routingKey)", "error": "\(error)",
                "body": "\(Self.truncated(taken.message.body))",
            ]
        )
        return RequestHandler.internalError()
    }

    /// Publishes the reply, then acknowledges the request (decision 0015: a reply that cannot be published
    /// leaves the request unacknowledged, for the broker to redeliver).
    private func reply(_ response: RPCResponse, to taken: Taken, on connection: AMQPConnection) throws(AMQPError) {
        var headers: [String: AMQPFieldValue] = [:]
        if response.replayed { headers[ContractHeaders.amqpIdempotentReplayed] = .bool(true) }
        let properties = AMQPProperties(
            contentType: "application/json",
            correlationID: taken.message.properties.correlationID,
            headers: headers
        )
        try connection.publish(exchange: "", routingKey: taken.replyTo, body: response.body, properties: properties)
        try connection.ack(deliveryTag: taken.message.deliveryTag)
        context.metrics.request(
            operation: taken.operation.routingKey,
            outcome: response.outcome,
            duration: ContinuousClock.now - taken.started
        )
    }

    /// The checks every request passes before anything acts on it (decision 0015): nil when it was dropped
    /// before it could be named (unknown consumer) or answered.
    private func admit(
        _ message: AMQPMessage,
        on connection: AMQPConnection
    ) throws(AMQPError) -> (Taken, Admission)? {
        let started = ContinuousClock.now
        var logger = self.logger
        logger[metadataKey: "correlation_id"] = "\(message.properties.correlationID ?? "-")"
        guard let operation = operations[message.consumerTag] ?? RPCOperation(rawValue: message.routingKey) else {
            logger.warning(
                "delivery from an unknown consumer; dropped",
                metadata: ["routing_key": "\(message.routingKey)"]
            )
            try connection.ack(deliveryTag: message.deliveryTag)
            return nil
        }
        logger[metadataKey: "operation"] = "\(operation.routingKey)"

        guard let replyTo = message.properties.replyTo, !replyTo.isEmpty else {
            context.metrics.dropped(reason: "no_reply_to")
            logger.warning("request without reply_to; acknowledged and dropped")
            try connection.ack(deliveryTag: message.deliveryTag)
            return nil
        }
        // Nobody could match an answer without one: not acted on (decision 0015).
        guard let correlationID = message.properties.correlationID, !correlationID.isEmpty else {
            context.metrics.dropped(reason: "no_correlation_id")
            logger.warning("request without correlation_id; acknowledged and dropped")
            try connection.ack(deliveryTag: message.deliveryTag)
            return nil
        }
        guard ReplyAddress.isAllowed(replyTo, brokerUser: message.properties.userID) else {
            context.metrics.dropped(reason: "reply_to_refused")
            logger.warning(
                "request whose reply_to is not the caller's; acknowledged and dropped",
                metadata: ["reply_to": "\(RPCWorker.truncated(Array(replyTo.utf8), limit: 140))"]
            )
            try connection.ack(deliveryTag: message.deliveryTag)
            return nil
        }

        let taken = Taken(message: message, operation: operation, replyTo: replyTo, logger: logger, started: started)
        switch Deadline.check(message.properties.headers[ContractHeaders.deadline], now: epochMilliseconds()) {
        case _ where message.bodyDropped:
            // Over MAX_REQUEST_BYTES: the body was read off the socket and dropped, never parsed.
            context.metrics.dropped(reason: "too_large")
            logger.info(
                "request body over the limit; answered, not read",
                metadata: ["size": "\(message.bodySize)", "limit": "\(context.configuration.maxRequestBytes)"]
            )
            return (
                taken,
                .answer(
                    RequestHandler.failure(
                        .requestTooLarge(size: message.bodySize, limit: context.configuration.maxRequestBytes)
                    )
                )
            )
        case .passed(let deadline):
            context.metrics.dropped(reason: "deadline")
            logger.info("request past its deadline; dropped without acting", metadata: ["deadline": "\(deadline)"])
            try connection.ack(deliveryTag: message.deliveryTag)
            return nil
        case .invalid:
            return (
                taken,
                .answer(
                    RequestHandler.failure(
                        .validation([
                            ValidationProblem(
                                field: ContractHeaders.deadline,
                                rule: .type,
                                message: "x-deadline must be Unix epoch milliseconds"
                            )
                        ])
                    )
                )
            )
        case .none:
            return try authorized(taken, deadline: nil)
        case .pending(let milliseconds):
            return try authorized(taken, deadline: milliseconds)
        }
    }

    /// Authorized by the AMQP user_id, which RabbitMQ guarantees is the publisher's login.
    private func authorized(_ taken: Taken, deadline: Int64?) throws(AMQPError) -> (Taken, Admission) {
        var taken = taken
        let brokerUser = taken.message.properties.userID
        taken.logger[metadataKey: "amqp.user_id"] = "\(brokerUser ?? "-")"
        switch BrokerAuthorization.grant(
            for: taken.operation,
            brokerUser: brokerUser,
            permissions: context.configuration.permissions
        ) {
        case .failure(let refusal):
            taken.logger.info("request refused: broker user not allowed", metadata: ["error": "\(refusal.message)"])
            return (taken, .answer(RequestHandler.failure(refusal)))
        case .success(let grant):
            var delivery = DeliveryContext(messageID: taken.message.properties.messageID, brokerUser: brokerUser)
            delivery.deadline = deadline
            return (taken, .act(Caller(brokerUser: brokerUser, grant: grant), delivery))
        }
    }

    /// Shutdown: stop taking deliveries, answer what the broker already sent us, then close everything.
    private func drainAndClose() {
        if let connection, connection.isOpen {
            for tag in operations.keys {
                do { try connection.cancel(consumerTag: tag) } catch { break }
            }
            let deadline = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < deadline {
                do {
                    guard let event = try connection.nextEvent(timeout: .milliseconds(100)) else { break }
                    if case .delivery(let message) = event { try process(message, on: connection) }
                } catch {
                    break
                }
            }
            connection.close()
        }
        connection = nil
        handler.close()
        context.health.reportDown(.broker, owner: name)
        context.health.reportDown(.database, owner: name)
    }

    /// A request body this large (or larger) was parsed into many allocations: see `returnFreedMemory`.
    static let largeRequestBytes = 64 << 10

    /// Gives the pages freed after a large request back to the system (`FreedMemory`): a burst of large,
    /// valid-size requests would otherwise leave the core tens of MiB larger for good (issue 14: memory stays
    /// flat after hostile messages). Only after large requests, which are rare (seat maps) or hostile.
    static func returnFreedMemory() {
        FreedMemory.release()
    }

    static func truncated(_ body: [UInt8], limit: Int = 512) -> String {
        let text = String(decoding: body.prefix(limit), as: UTF8.self)
        return body.count > limit ? text + "…(\(body.count) bytes)" : text
    }
}

/// Where the core may publish a reply: RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`, and the
/// `amq.rabbitmq.reply-to.<...>` names the broker gives it), a queue the broker named for its declarer
/// (`amq.gen-...`), or a queue in the caller's own namespace (`<broker user>.<...>`, the names the project's
/// scripts let a consumer declare). Never a name of the core's own (`inventory.*`), nor any other service's
/// queue: a request aimed there is not acted on (decision 0015, README "Contracts").
enum ReplyAddress {
    static let directReplyTo = "amq.rabbitmq.reply-to"

    static func isAllowed(_ replyTo: String, brokerUser: String?) -> Bool {
        if replyTo.hasPrefix("inventory.") { return false }
        if replyTo == directReplyTo || replyTo.hasPrefix(directReplyTo + ".") { return true }
        if replyTo.hasPrefix("amq.gen-") { return true }
        if let brokerUser, !brokerUser.isEmpty, replyTo.hasPrefix(brokerUser + "."),
            replyTo.count > brokerUser.count + 1
        {
            return true
        }
        return false
    }
}

/// The `x-deadline` header: absolute Unix epoch milliseconds.
enum Deadline: Equatable {
    case none
    case pending(Int64)
    case passed(Int64)
    case invalid

    static func check(_ value: AMQPFieldValue?, now: Int64) -> Deadline {
        guard let value else { return .none }
        let deadline: Int64?
        switch value {
        case .int(let number): deadline = number
        case .double(let number): deadline = number.isFinite && abs(number) < 9e15 ? Int64(number) : nil
        case .string(let text): deadline = Int64(text.trimmingCharacters(in: .whitespaces))
        case .bool: deadline = nil
        }
        guard let deadline else { return .invalid }
        return deadline <= now ? .passed(deadline) : .pending(deadline)
    }
}

/// A connection found closed without an error of its own.
struct ClosedConnection: Error, CustomStringConvertible {
    var description: String { "the connection was closed" }
}
