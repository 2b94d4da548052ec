import Foundation
import Logging

@testable import AMQPClient

/// The shared test broker (RabbitMQ on localhost; override with AMQP_URL). Every test makes its own
/// uniquely named queues and exchanges and deletes them, so tests run in parallel and twice in a row.
enum Broker {
    static let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"

    static func configuration(_ purpose: String) throws -> AMQPConfiguration {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "amqp-client-tests \(purpose) \(UUID().uuidString)"
        return configuration
    }

    static func connect(_ purpose: String = #function, heartbeat: Duration? = nil) throws -> AMQPConnection {
        var configuration = try configuration(purpose)
        if let heartbeat { configuration.heartbeat = heartbeat }
        var logger = Logger(label: "amqp-client-tests")
        logger.logLevel = ProcessInfo.processInfo.environment["AMQP_TEST_LOG"] == nil ? .warning : .debug
        return try AMQPConnection(configuration: configuration, logger: logger)
    }

    /// For connections expected to fail: their info-level "login failed" lines are noise here.
    static let quietLogger: Logger = {
        var logger = Logger(label: "amqp-client-tests")
        logger.logLevel = .warning
        return logger
    }()

    static func uniqueName(_ kind: String) -> String {
        "amqp-client-tests.\(kind).\(UUID().uuidString)"
    }

    /// Opens a connection for `body` and always closes it.
    static func withConnection<R>(
        _ purpose: String = #function, heartbeat: Duration? = nil, _ body: (AMQPConnection) throws -> R
    ) throws -> R {
        let connection = try connect(purpose, heartbeat: heartbeat)
        defer { connection.close() }
        return try body(connection)
    }

    /// Declares a unique non-durable queue, and deletes it afterwards even if `connection` died meanwhile.
    static func withQueue<R>(
        on connection: AMQPConnection, arguments: [String: AMQPFieldValue] = [:], _ body: (String) throws -> R
    ) throws -> R {
        let name = try connection.declareQueue(uniqueName("queue"), durable: false, arguments: arguments)
        defer { cleanUp { try $0.deleteQueue(name) } }
        return try body(name)
    }

    static func withExchange<R>(
        on connection: AMQPConnection, type: ExchangeType = .direct, _ body: (String) throws -> R
    ) throws -> R {
        let name = uniqueName("exchange")
        try connection.declareExchange(name, type: type, durable: false)
        defer { cleanUp { try $0.deleteExchange(name) } }
        return try body(name)
    }

    private static func cleanUp(_ action: (AMQPConnection) throws -> Void) {
        // A fresh connection: the test's own may have been closed on purpose.
        guard let connection = try? connect("clean-up") else { return }
        try? action(connection)
        connection.close()
    }
}

extension AMQPConnection {
    /// The next delivery within `timeout`, skipping confirms; nil when none came.
    func nextDelivery(within timeout: Duration = .seconds(3)) throws -> AMQPMessage? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if case .delivery(let message)? = try nextEvent(timeout: clock.now.duration(to: deadline)) {
                return message
            }
        }
        return nil
    }

    /// Events until `stop` says enough or `timeout` passes.
    func collectEvents(within timeout: Duration = .seconds(3), until stop: ([AMQPEvent]) -> Bool) throws
        -> [AMQPEvent]
    {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var events: [AMQPEvent] = []
        while clock.now < deadline && !stop(events) {
            if let event = try nextEvent(timeout: clock.now.duration(to: deadline)) { events.append(event) }
        }
        return events
    }
}
