import AMQPClient
import Contracts
import Foundation
import Logging
import Synchronization

/// The null RPC server of the ceiling: consumes a queue with manual acks and a prefetch, as the core
/// does, and answers every request with its own body to `reply_to`, same correlation id. No work at all:
/// what it reaches is what the broker and the project's AMQP layer allow.
public final class EchoServer: Sendable {
    public let queue: String
    private let stopping = StopFlag()
    private let threads: [BackgroundThread<String?>]
    private let durable: Bool
    private let configuration: AMQPConfiguration
    private let logger: Logger

    /// `durable`: the queue is declared durable and not auto-delete, as the core's RPC queues are, so that
    /// with `queue_type=quorum` it is a quorum queue (one request hop as a cluster's RPC queues cost it);
    /// `stop()` deletes it. Otherwise a transient auto-delete classic queue.
    public init(
        configuration: AMQPConfiguration,
        threads count: Int,
        prefetch: UInt16 = 128,
        durable: Bool = false,
        logger: Logger
    ) throws {
        let queue = "inventory-bench.echo.\(UInt32.random(in: 0...UInt32.max))"
        self.queue = queue
        self.durable = durable
        self.configuration = configuration
        self.logger = logger
        // Declared up front so no request is published before the queue exists.
        let setup = try AMQPConnection(configuration: configuration, logger: logger)
        try setup.declareQueue(queue, durable: durable, exclusive: false, autoDelete: !durable)
        setup.close()
        let ready = DispatchSemaphore(value: 0)
        let stopping = self.stopping
        threads = (0..<count).map { index in
            BackgroundThread(name: "bench-echo-\(index)") { () -> String? in
                var signalled = false
                defer { if !signalled { ready.signal() } }
                do {
                    var configuration = configuration
                    configuration.connectionName = "inventory-bench-echo-\(index)"
                    let connection = try AMQPConnection(configuration: configuration, logger: logger)
                    defer { connection.close() }
                    try connection.setPrefetch(prefetch)
                    try connection.consume(queue: queue, noAck: false)
                    signalled = true
                    ready.signal()
                    while !stopping.isRaised {
                        guard let event = try connection.nextEvent(timeout: .milliseconds(100)),
                            case .delivery(let message) = event
                        else { continue }
                        if let replyTo = message.properties.replyTo {
                            try connection.publish(
                                exchange: "",
                                routingKey: replyTo,
                                body: message.body,
                                properties: AMQPProperties(
                                    contentType: ContractHeaders.contentType,
                                    correlationID: message.properties.correlationID
                                )
                            )
                        }
                        try connection.ack(deliveryTag: message.deliveryTag)
                    }
                    return nil
                } catch {
                    return "\(error)"
                }
            }
        }
        for _ in 0..<count { ready.wait() }
    }

    /// Stops the server threads; returns their failures, if any.
    public func stop() -> [String] {
        stopping.raise()
        var failures = threads.compactMap { $0.join() }
        if durable {
            do {
                let connection = try AMQPConnection(configuration: configuration, logger: logger)
                defer { connection.close() }
                try connection.deleteQueue(queue)
            } catch {
                failures.append("deleting the echo queue \(queue): \(error)")
            }
        }
        return failures
    }
}
