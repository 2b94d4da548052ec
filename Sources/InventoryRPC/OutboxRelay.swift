import AMQPClient
import Contracts
import Foundation
import Logging
import PostgresClient
import ServiceSupport

/// Publishes committed outbox rows to `inventory.events`, in id order, at least once.
///
/// One relay publishes across all instances: leadership is a session-level advisory lock on the relay's
/// own database connection, so it passes to another instance when the leader's process or connection dies.
/// The leader wakes on `LISTEN inventory_outbox` and also polls as a safety net. Each batch is published
/// with confirms and `mandatory`; rows are marked published only after the broker acknowledged them, so a
/// broker restart or a nack leads to republishing from the database, never to a lost or invented event.
/// A batch holds at most one event per hold (`onePerHold`), so a hold's events reach the broker in order
/// even when it nacks one message of a batch and acks a later one.
final class OutboxRelay {
    /// The advisory lock key of the relay leadership (any fixed bigint, unique in this database).
    static let leadershipLockKey: Int64 = 0x696E_765F_6F75_7462  // "inv_outb"
    static let channel = "inventory_outbox"
    static let batchSize = 500
    static let confirmTimeout: Duration = .seconds(10)

    private let context: CoreContext
    private var logger: Logger
    private var database: PostgresConnection?
    private var store: InventoryStore?
    private var leader = false
    private var broker: AMQPConnection?
    private var databaseRetry = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
    private var brokerRetry = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
    private var databaseLost = false
    private var brokerLost = false

    init(context: CoreContext) {
        self.context = context
        var logger = context.logger
        logger[metadataKey: "thread"] = "outbox-relay"
        self.logger = logger
    }

    func run() {
        let stop = context.stop
        while !stop.isTriggered {
            guard let store = leadingStore() else { continue }
            guard let broker = connectedBroker() else { continue }
            do {
                let published = try publishBatch(store: store, broker: broker)
                if published > 0 { continue }  // more may have committed meanwhile
                try idle(broker: broker)
            } catch let error as AMQPError {
                dropBroker(error)
            } catch let error as AMQPConfirmTimeout {
                dropBroker(error)
            } catch {
                dropDatabase(error)
            }
        }
        broker?.close()
        broker = nil
        database?.close()  // releases the leadership lock
        database = nil
        store = nil
    }

    // MARK: Leadership

    /// The store when this relay holds the leadership; nil after having waited a while.
    private func leadingStore() -> InventoryStore? {
        if let store, let database, database.isOpen, leader { return store }
        if database.map({ !$0.isOpen }) ?? false { dropDatabase(ClosedConnection()) }
        do {
            if database == nil {
                let connection = try PostgresConnection(url: context.configuration.databaseURL, logger: logger)
                database = connection
                store = try InventoryStore(connection: connection)
                databaseRetry.reset()
                if databaseLost {
                    logger.info("outbox relay reconnected to the database")
                    databaseLost = false
                }
            }
            guard let database, let store else { return nil }
            let result = try database.query("SELECT pg_try_advisory_lock($1) AS locked", [Self.leadershipLockKey])
            let locked = try result.rows.first?.decode("locked", as: Bool.self) ?? false
            guard locked else {
                context.stop.wait(timeout: context.configuration.relayLeaderRetry)
                return nil
            }
            try database.listen(Self.channel)
            leader = true
            logger.info("outbox relay is the leader: publishing events")
            return store
        } catch {
            dropDatabase(error)
            return nil
        }
    }

    private func dropDatabase(_ error: any Error) {
        if !databaseLost {
            logger.warning(
                "outbox relay lost the database; reconnecting with back-off",
                metadata: ["error": "\(error)"]
            )
            databaseLost = true
        }
        if leader { logger.info("outbox relay gave up the leadership") }
        leader = false
        database?.close()
        database = nil
        store = nil
        context.stop.wait(timeout: databaseRetry.nextDelay())
    }

    // MARK: Broker

    private func connectedBroker() -> AMQPConnection? {
        if let broker, broker.isOpen { return broker }
        if broker != nil { dropBroker(ClosedConnection()) }
        do {
            var configuration = try AMQPConfiguration(url: context.configuration.rabbitmqURL)
            configuration.connectionName = "inventory-rpc outbox-relay"
            let connection = try AMQPConnection(configuration: configuration, logger: logger)
            try connection.declareExchange(EventType.exchange, type: .topic, durable: true)
            try connection.enablePublisherConfirms()
            broker = connection
            brokerRetry.reset()
            if brokerLost {
                logger.info("outbox relay reconnected to the broker; republishing what is not confirmed")
                brokerLost = false
            }
            return connection
        } catch {
            dropBroker(error)
            return nil
        }
    }

    private func dropBroker(_ error: any Error) {
        if !brokerLost {
            logger.warning("outbox relay lost the broker; reconnecting with back-off", metadata: ["error": "\(error)"])
            brokerLost = true
        }
        broker?.close()
        broker = nil
        context.stop.wait(timeout: brokerRetry.nextDelay())
    }

    // MARK: Publishing

    /// Publishes one batch and marks the confirmed prefix published. Returns how many rows it read.
    private func publishBatch(store: InventoryStore, broker: AMQPConnection) throws -> Int {
        let events = Self.onePerHold(try store.unpublishedEvents(limit: Self.batchSize))
        guard let oldest = events.first else {
            context.metrics.outboxLag(seconds: 0)
            return 0
        }
        if let event = try? ContractJSON.decoder().decode(InventoryEvent.self, from: Data(oldest.payload)) {
            context.metrics.outboxLag(seconds: max(0, Date().timeIntervalSince(event.occurredAt)))
        }

        var outstanding: [UInt64: Int] = [:]
        for (index, event) in events.enumerated() {
            let properties = AMQPProperties(
                contentType: "application/json",
                messageID: event.eventID,
                persistent: true,
                type: event.type
            )
            let tag = try broker.publish(
                exchange: EventType.exchange,
                routingKey: event.type,
                body: event.payload,
                properties: properties,
                mandatory: true
            )
            outstanding[tag] = index
        }

        var confirmed = Set<Int>()
        var nacked = false
        var returned = 0
        let deadline = ContinuousClock.now + Self.confirmTimeout
        while !outstanding.isEmpty {
            guard ContinuousClock.now < deadline else {
                throw AMQPConfirmTimeout()
            }
            guard let event = try broker.nextEvent(timeout: .milliseconds(250)) else { continue }
            switch event {
            case .ack(let tag, let multiple):
                for key in outstanding.keys where multiple ? key <= tag : key == tag {
                    confirmed.insert(outstanding.removeValue(forKey: key)!)
                }
            case .nack(let tag, let multiple):
                nacked = true
                for key in outstanding.keys where multiple ? key <= tag : key == tag {
                    outstanding.removeValue(forKey: key)
                }
            case .returned(let message):
                // Routed nowhere: nobody is subscribed to this type. The broker still confirms it.
                returned += 1
                logger.debug("event returned unroutable", metadata: ["event.type": "\(message.routingKey)"])
            case .delivery:
                break
            }
        }

        // Only the confirmed prefix (in id order) is marked: a nacked event is republished together with
        // everything after it. Duplicates are allowed (consumers de-duplicate by eventId); a gap is not.
        var ids: [Int64] = []
        for (index, event) in events.enumerated() {
            guard confirmed.contains(index) else { break }
            ids.append(event.id)
        }
        if !ids.isEmpty { try store.markPublished(ids: ids) }
        context.metrics.outboxPublished(ids.count, returned: min(returned, ids.count))
        if nacked {
            logger.warning("broker nacked events; republishing", metadata: ["count": "\(events.count - ids.count)"])
            context.stop.wait(timeout: .milliseconds(200))
        }
        return events.count
    }

    /// The longest prefix of `events` (in outbox id order) in which no hold has two events. A hold's next event
    /// is published only once the broker confirmed the one before it (rule 4, in order per hold): a batch is
    /// pipelined, and a broker may nack one message and ack a later one of the same batch (a quorum queue
    /// whose leader changes, a queue that refuses publishes when full), which delivered `hold.released`
    /// before a republished `hold.created` (found by the cluster fault run, decision 0027). Nothing else
    /// orders events of different holds (consumers order per seat by `seatVersions`), so the cut costs only
    /// batch size when one hold's events wait in the outbox together (a backlog).
    static func onePerHold(_ events: [OutboxEvent]) -> [OutboxEvent] {
        var holds = Set<String>()
        for (index, event) in events.enumerated() where !holds.insert(event.holdID).inserted {
            return Array(events[..<index])
        }
        return events
    }

    /// Waits for a NOTIFY (or the poll interval), in slices short enough to notice a shutdown at once and
    /// to keep the broker connection's heartbeats answered.
    private func idle(broker: AMQPConnection) throws {
        guard let database else { return }
        let deadline = ContinuousClock.now + context.configuration.outboxPollInterval
        while !context.stop.isTriggered {
            let slice = min(Duration.milliseconds(250), ContinuousClock.now.duration(to: deadline))
            if slice <= .zero { return }
            if !(try database.waitForNotifications(timeout: slice)).isEmpty { return }
            while let event = try broker.nextEvent(timeout: .zero) {
                if case .returned(let message) = event {
                    logger.debug("late return of an event", metadata: ["event.type": "\(message.routingKey)"])
                }
            }
        }
    }
}

struct AMQPConfirmTimeout: Error, CustomStringConvertible {
    var description: String { "the broker did not confirm the published events in time" }
}
