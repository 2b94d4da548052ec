import Logging
import PostgresClient
import ServiceSupport

/// One thread's PostgreSQL connection and the `InventoryStore` on it, reconnected with back-off.
///
/// Connection attempts are throttled: while the database is down, requests are answered
/// `SERVICE_UNAVAILABLE` at once instead of each waiting for a connect to fail.
final class DatabaseSession {
    private let url: String
    private let owner: String
    private let health: CoreHealth
    private let logger: Logger
    private var retry = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
    private var nextAttempt = ContinuousClock.now
    private var lost = false
    private(set) var connection: PostgresConnection?
    private(set) var store: InventoryStore?

    init(url: String, owner: String, health: CoreHealth, logger: Logger) {
        self.url = url
        self.owner = owner
        self.health = health
        self.logger = logger
    }

    /// The store when connected, connecting first if the back-off allows; nil while the database is down.
    func currentStore() -> InventoryStore? {
        if let store, let connection, connection.isOpen { return store }
        if connection != nil { dropConnection(reason: "connection closed") }
        guard ContinuousClock.now >= nextAttempt else { return nil }
        do {
            let connection = try PostgresConnection(url: url, logger: logger)
            let store = try InventoryStore(connection: connection)
            self.connection = connection
            self.store = store
            retry.reset()
            health.reportUp(.database, owner: owner)
            if lost {
                logger.info("database reconnected", metadata: ["thread": "\(owner)"])
                lost = false
            }
            return store
        } catch {
            if !lost {
                logger.warning(
                    "database unreachable; retrying with back-off",
                    metadata: ["thread": "\(owner)", "error": "\(error)"]
                )
                lost = true
            } else {
                logger.debug("database still unreachable", metadata: ["thread": "\(owner)", "error": "\(error)"])
            }
            health.reportDown(.database, owner: owner)
            nextAttempt = ContinuousClock.now + retry.nextDelay()
            return nil
        }
    }

    /// After an error: drop the connection when the error says it is broken. Returns true when it did.
    @discardableResult
    func handle(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        let broken =
            error.kind == .connectionLost || error.kind == .connectionFailed || !(connection?.isOpen ?? false)
        if broken { dropConnection(reason: "\(error)") }
        return broken
    }

    /// A deadlock or serialization failure: the transaction rolled back and the same work may succeed.
    static func isTransient(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        return error.kind == .query && error.isRetryable
    }

    func close() {
        connection?.close()
        connection = nil
        store = nil
    }

    private func dropConnection(reason: String) {
        if !lost {
            logger.warning(
                "database connection lost; reconnecting with back-off",
                metadata: ["thread": "\(owner)", "error": "\(reason)"]
            )
            lost = true
        }
        connection?.close()
        connection = nil
        store = nil
        health.reportDown(.database, owner: owner)
        nextAttempt = ContinuousClock.now + retry.nextDelay()
    }
}
