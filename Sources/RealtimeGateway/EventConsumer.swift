import AMQPClient
import Contracts
import Logging
import ServiceSupport

/// The event side: on a thread of its own (rabbitmq-c blocks), an exclusive queue named after the broker user, bound
/// to `inventory.events` with `#`, consumed without acks (a lost connection loses the queue anyway; the
/// gap is repaired by a resync, not by redelivery). Each event is decoded, de-duplicated by `eventId`
/// and handed to the hub on this same thread.
///
/// Reconnects with back-off. Each connection that succeeds starts with a resync of every subscription:
/// events published while the gateway had no queue are lost to it, so clients get fresh snapshots,
/// requested only once the new queue is bound, so nothing after the snapshot can be missed.
final class EventConsumer: Sendable {
    private let amqp: AMQPConfiguration
    private let hub: Hub
    private let stop = ShutdownSignal()
    private let logger: Logger
    private let thread: DedicatedThread

    init(amqp: AMQPConfiguration, hub: Hub, deduplicationCapacity: Int, logger: Logger) {
        var amqp = amqp
        amqp.connectionName = (amqp.connectionName ?? "realtime-gateway") + " events"
        self.amqp = amqp
        self.hub = hub
        self.logger = logger
        let stop = self.stop
        let body = Loop(
            amqp: amqp,
            hub: hub,
            deduplicator: EventDeduplicator(capacity: deduplicationCapacity),
            stop: stop,
            logger: logger
        )
        thread = DedicatedThread(name: "gateway-events") { body.run() }
    }

    func shutdown() async {
        stop.trigger()
        await thread.join()
    }

    private struct Loop: Sendable {
        let amqp: AMQPConfiguration
        let hub: Hub
        var deduplicator: EventDeduplicator
        let stop: ShutdownSignal
        let logger: Logger

        var metrics: GatewayMetrics { hub.metrics }

        func run() {
            var this = self
            this.loop()
        }

        private mutating func loop() {
            var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
            while !stop.isTriggered {
                let connection: AMQPConnection
                do {
                    connection = try AMQPConnection(configuration: amqp, logger: logger)
                    // The core declares the exchange; the gateway's broker user may only declare, bind and read
                    // queues named after itself (`<user>.events.<random>`, README "Broker users").
                    try connection.declareExchange(EventType.exchange, type: .topic, durable: true, passive: true)
                    let queue = try connection.declareQueue(
                        "\(amqp.user).events.\(UInt64.random(in: 0...UInt64.max))",
                        durable: false,
                        exclusive: true,
                        autoDelete: true
                    )
                    try connection.bindQueue(queue, exchange: EventType.exchange, routingKey: "#")
                    try connection.consume(queue: queue, noAck: true, exclusive: true)
                } catch {
                    metrics.brokerConnected.set(0)
                    let delay = backoff.nextDelay()
                    logger.warning(
                        "cannot consume inventory events; retrying",
                        metadata: ["error": "\(error)", "retry.in": "\(delay)"]
                    )
                    if stop.wait(timeout: delay) { break }
                    continue
                }
                backoff.reset()
                metrics.brokerConnected.set(1)
                logger.info("consuming inventory events", metadata: ["amqp.exchange": "\(EventType.exchange)"])
                // Whatever came before this queue existed is unknown to the gateway.
                hub.resync(reason: "events-gap")
                do {
                    while !stop.isTriggered {
                        guard let event = try connection.nextEvent(timeout: .milliseconds(250)) else { continue }
                        if case .delivery(let message) = event { handle(message.body) }
                    }
                } catch {
                    metrics.brokerConnected.set(0)
                    logger.warning("lost the broker connection of the event feed", metadata: ["error": "\(error)"])
                }
                connection.close()
            }
            metrics.brokerConnected.set(0)
        }

        private mutating func handle(_ body: [UInt8]) {
            metrics.eventsReceived.increment()
            let event: InventoryEvent
            do {
                event = try ContractJSON.decode(InventoryEvent.self, from: body)
            } catch {
                metrics.eventsInvalid.increment()
                logger.warning(
                    "ignored an event that does not match the contract",
                    metadata: [
                        "error": "\(error)", "body.prefix": "\(String(decoding: body.prefix(200), as: UTF8.self))",
                    ]
                )
                return
            }
            guard deduplicator.firstSighting(of: event.eventId) else {
                metrics.eventsDuplicate.increment()
                return
            }
            hub.publish(event)
        }
    }
}
