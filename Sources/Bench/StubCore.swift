import AMQPClient
import Contracts
import Foundation
import InventoryRPC
import Logging
import PostgresClient
import Synchronization

/// A storage-only server: the AMQP contract over the core's own PostgreSQL functions (`InventoryStore`),
/// one round trip per operation, without Redis locks, expiry sweep, publisher confirms, metrics or
/// deadline checks. Two uses: a stand-in while the real core cannot serve (the bench's test says when it
/// uses it), and a ceiling: "the same SQL through the same AMQP layer with nothing else", so the report
/// shows what the core's extra work costs. Not a replacement for the core: it ignores the rules it skips.
public final class StubCore: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let threads: Int

    public init(
        amqpURL: String,
        databaseURL: String,
        workers: Int = 4,
        holdTTLSeconds: Int = 300,
        logger: Logger
    ) throws {
        let configuration = try AMQPConfiguration(url: amqpURL)
        let setup = try AMQPConnection(configuration: configuration, logger: logger)
        try setup.declareExchange(RPCOperation.exchange, type: .direct)
        try setup.declareExchange(EventType.exchange, type: .topic)
        for operation in RPCOperation.allCases {
            try setup.declareQueue(operation.queueName)
            try setup.bindQueue(operation.queueName, exchange: RPCOperation.exchange, routingKey: operation.routingKey)
        }
        setup.close()
        threads = workers + 1
        for index in 0..<workers {
            let thread = Thread { [self] in
                worker(
                    configuration: configuration,
                    databaseURL: databaseURL,
                    ttl: holdTTLSeconds,
                    logger: logger,
                    index: index
                )
                done.signal()
            }
            thread.start()
        }
        let relayThread = Thread { [self] in
            self.relay(configuration: configuration, databaseURL: databaseURL, logger: logger)
            done.signal()
        }
        relayThread.start()
    }

    public func stop() {
        stopping.store(true, ordering: .releasing)
        for _ in 0..<threads { done.wait() }
    }

    private func worker(
        configuration: AMQPConfiguration,
        databaseURL: String,
        ttl: Int,
        logger: Logger,
        index: Int
    ) {
        do {
            let connection = try AMQPConnection(configuration: configuration, logger: logger)
            defer { connection.close() }
            let store = try InventoryStore(connection: try PostgresConnection(url: databaseURL, logger: logger))
            try connection.setPrefetch(32)
            for operation in RPCOperation.allCases { try connection.consume(queue: operation.queueName) }
            let decoder = ContractJSON.decoder()
            let limits = RequestLimits(maxSeatsPerHold: 10)
            while !stopping.load(ordering: .acquiring) {
                guard let event = try connection.nextEvent(timeout: .milliseconds(100)),
                    case .delivery(let message) = event
                else { continue }
                let body: [UInt8]
                switch RPCOperation(rawValue: message.routingKey) {
                case .hold:
                    body = try answer(RequestDecoder.decode(HoldRequest.self, from: message.body, limits: limits)) {
                        switch try store.hold(holdID: "h_\(UUID().uuidString)", request: $0, ttlSeconds: ttl) {
                        case .created(let hold), .replayed(let hold): .success(hold)
                        case .unavailable(let seats): .failure(ErrorBody.seatUnavailable(seats))
                        case .unknownSeats(let seats): .failure(ErrorBody.unknownSeats(seats))
                        case .showtimeNotFound: .failure(ErrorBody(code: .showtimeNotFound, message: "no seat map"))
                        case .keyReused: .failure(ErrorBody(code: .idempotencyKeyReused, message: "key reused"))
                        case .noSuitableSeats(let quantity): .failure(ErrorBody.noSuitableSeats(quantity: quantity))
                        case .seatLimitReached(let limit, let held):
                            .failure(ErrorBody.seatLimitReached(limit: limit, held: held))
                        }
                    }
                case .release:
                    body = try answer(RequestDecoder.decode(ReleaseRequest.self, from: message.body, limits: limits)) {
                        try store.release($0)
                    }
                case .purchase:
                    body = try answer(RequestDecoder.decode(PurchaseRequest.self, from: message.body, limits: limits)) {
                        try store.purchase($0)
                    }
                case .availability:
                    body = try answer(
                        RequestDecoder.decode(AvailabilityRequest.self, from: message.body, limits: limits)
                    ) {
                        try store.availability(showtimeID: $0.showtimeId)
                    }
                case .seatsDefine:
                    let request = try decoder.decode(SeatsDefineRequest.self, from: Data(message.body))
                    body = try RPCReply<SeatsDefined>.ok(try store.defineSeats(request)).body()
                default:
                    body = try RPCReply<PingReply>.ok(PingReply()).body()
                }
                if let replyTo = message.properties.replyTo {
                    try connection.publish(
                        exchange: "",
                        routingKey: replyTo,
                        body: body,
                        properties: AMQPProperties(
                            contentType: "application/json",
                            correlationID: message.properties.correlationID
                        )
                    )
                }
                try connection.ack(deliveryTag: message.deliveryTag)
            }
        } catch {
            logger.error("stub worker failed", metadata: ["error": "\(error)", "worker": "\(index)"])
        }
    }

    private func answer<Request, Reply: Codable & Sendable>(
        _ decoded: Result<Request, ErrorBody>,
        _ body: (Request) throws -> Result<Reply, ErrorBody>
    ) throws -> [UInt8] {
        switch decoded {
        case .failure(let error): return try RPCReply<Reply>.error(error).body()
        case .success(let request):
            switch try body(request) {
            case .success(let reply): return try RPCReply.ok(reply).body()
            case .failure(let error): return try RPCReply<Reply>.error(error).body()
            }
        }
    }

    private func relay(configuration: AMQPConfiguration, databaseURL: String, logger: Logger) {
        do {
            let connection = try AMQPConnection(configuration: configuration, logger: logger)
            defer { connection.close() }
            let store = try InventoryStore(connection: try PostgresConnection(url: databaseURL, logger: logger))
            while !stopping.load(ordering: .acquiring) {
                let events = try store.unpublishedEvents(limit: 500)
                if events.isEmpty {
                    Thread.sleep(forTimeInterval: 0.02)
                    continue
                }
                for event in events {
                    try connection.publish(
                        exchange: EventType.exchange,
                        routingKey: event.type,
                        body: event.payload,
                        properties: AMQPProperties(
                            contentType: "application/json",
                            messageID: event.eventID,
                            persistent: true
                        )
                    )
                }
                try store.markPublished(ids: events.map(\.id))
            }
        } catch {
            logger.error("stub relay failed", metadata: ["error": "\(error)"])
        }
    }
}
