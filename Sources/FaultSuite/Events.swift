import AMQPClient
import Bench
import Contracts
import Foundation
import Logging

/// The fault suite's own view of `inventory.events`: a durable queue bound to every event type, declared
/// before the first request of a run, so events published across broker restarts wait in it (durable
/// queue, persistent messages) until the checker drains it at the end.
public enum EventQueue {
    public static let name = "faults.events"

    /// Declares the exchange (as the core does) and the queue, emptied, bound with `#`.
    public static func prepare(url: String, logger: Logger) throws {
        let connection = try AMQPConnection(configuration: try AMQPConfiguration(url: url), logger: logger)
        defer { connection.close() }
        try connection.declareExchange(EventType.exchange, type: .topic, durable: true)
        try connection.deleteQueue(name)
        try connection.declareQueue(name, durable: true)
        try connection.bindQueue(name, exchange: EventType.exchange, routingKey: "#")
    }

    /// Takes every message in the queue (acknowledging them) until none came for `idle`; writes each to
    /// `logPath` and returns them in arrival order (duplicates included: the checker counts them).
    public static func drain(
        url: String,
        idle: Duration,
        logPath: String,
        logger: Logger
    ) throws -> (
        events: [ReceivedEvent], undecodable: [String]
    ) {
        let connection = try AMQPConnection(configuration: try AMQPConfiguration(url: url), logger: logger)
        defer { connection.close() }
        try connection.setPrefetch(500)
        try connection.consume(queue: name, noAck: false)
        let writer = try JSONLinesWriter(path: logPath)
        defer { writer.close() }
        var events: [ReceivedEvent] = []
        var undecodable: [String] = []
        var last = ContinuousClock.now
        while ContinuousClock.now - last < idle {
            guard let event = try connection.nextEvent(timeout: .milliseconds(100)), case .delivery(let message) = event
            else { continue }
            last = .now
            if let (received, occurredAt) = ReceivedEvent.decode(message.body, sequence: events.count) {
                events.append(received)
                writer.write(
                    LoggedEvent(
                        eventId: received.eventID,
                        type: received.type,
                        holdId: received.holdID,
                        occurredAt: occurredAt,
                        seatVersions: received.seatVersions,
                        messageId: message.properties.messageID,
                        redelivered: message.redelivered
                    )
                )
            } else {
                undecodable.append(
                    "\(message.routingKey): \(String(decoding: message.body.prefix(300), as: UTF8.self))"
                )
            }
            try connection.ack(deliveryTag: message.deliveryTag)
        }
        return (events, undecodable)
    }

    struct LoggedEvent: Codable {
        var eventId: String
        var type: String
        var holdId: String
        var occurredAt: Date
        var seatVersions: [String: Int64]?
        var messageId: String?
        var redelivered: Bool
    }
}
