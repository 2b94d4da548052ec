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

    public init(configuration: AMQPConfiguration, threads count: Int, prefetch: UInt16 = 128, logger: Logger) throws {
        let queue = "inventory-bench.echo.\(UInt32.random(in: 0...UInt32.max))"
        self.queue = queue
        // Declared up front so no request is published before the queue exists.
        let setup = try AMQPConnection(configuration: configuration, logger: logger)
        try setup.declareQueue(queue, durable: false, exclusive: false, autoDelete: true)
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
        return threads.compactMap { $0.join() }
    }
}
