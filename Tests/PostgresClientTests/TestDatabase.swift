import Foundation
import Logging
import PostgresClient

/// Where the integration tests find PostgreSQL: `POSTGRES_TEST_URL`, else the development server.
enum TestDatabase {
    static let url =
        ProcessInfo.processInfo.environment["POSTGRES_TEST_URL"]
        ?? "postgresql://postgres:postgres@localhost:5432/inventory_db"

    static let logger: Logger = {
        var logger = Logger(label: "PostgresClientTests")
        logger.logLevel = .warning
        return logger
    }()

    static func connect() throws -> PostgresConnection {
        try PostgresConnection(url: url, logger: logger)
    }

    /// A connection closed after `body`, whatever happens.
    static func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let connection = try connect()
        defer { connection.close() }
        return try body(connection)
    }

    /// A name no other test (or earlier run) uses, safe as an unquoted identifier.
    static func uniqueName(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }
}

/// The SQL error a closure threw, or nil.
func postgresError(_ body: () throws -> Void) -> PostgresError? {
    do {
        try body()
        return nil
    } catch let error as PostgresError {
        return error
    } catch {
        return nil
    }
}
