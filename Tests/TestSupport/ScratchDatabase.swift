import Foundation
import Logging
import PostgresClient

/// A PostgreSQL database of the test's own on the shared server (`TEST_DATABASE_URL`, any database on
/// it; default the local `postgres` database), so suites run in parallel and twice in a row. `drop()`
/// removes it, connections and all.
public struct ScratchDatabase: Sendable {
    public static let adminURL =
        ProcessInfo.processInfo.environment["TEST_DATABASE_URL"]
        ?? "postgresql://postgres:postgres@localhost:5432/postgres"

    /// For the fixtures' own connections: says nothing.
    public static let logger = Logger(label: "test.database") { _ in SwiftLogNoOpLogHandler() }

    public let name: String

    /// `adminURL` with its database replaced by `name`.
    public static func url(database name: String) -> String {
        guard var components = URLComponents(string: adminURL) else { return adminURL }
        components.path = "/" + name
        return components.string ?? adminURL
    }

    /// Opens a quiet connection to `url` (the caller closes it).
    public static func connect(_ url: String) throws -> PostgresConnection {
        try PostgresConnection(url: url, logger: logger)
    }

    /// A database name (`<prefix>_<pid>_<n>_<random>`); nothing is created yet.
    public init(prefix: String = "test") {
        name = uniqueName(prefix, separator: "_")
    }

    /// Creates a new, empty database.
    public static func create(prefix: String = "test") throws -> ScratchDatabase {
        let database = ScratchDatabase(prefix: prefix)
        try database.create()
        return database
    }

    public func create() throws {
        let admin = try Self.connect(Self.adminURL)
        defer { admin.close() }
        try admin.simpleQuery("CREATE DATABASE \"\(name)\"")
    }

    public var url: String { Self.url(database: name) }

    public func drop() {
        guard let admin = try? Self.connect(Self.adminURL) else { return }
        defer { admin.close() }
        try? admin.simpleQuery("DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)")
    }

    /// Runs `body` on a connection to this database, closed afterwards.
    public func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let connection = try Self.connect(url)
        defer { connection.close() }
        return try body(connection)
    }

    /// Migrates it with `inventory-rpc migrate` of the build (for test targets that do not link the core);
    /// `environment` is added to the test process's own, and DATABASE_URL to that.
    public func migrateWithBuiltCore(environment: [String: String] = [:]) throws {
        let (status, output) = try runProcess(
            try Products.path("inventory-rpc"),
            ["migrate"],
            environment: environment.merging(["DATABASE_URL": url]) { $1 }
        )
        guard status == 0 else { throw TestFailure("inventory-rpc migrate: \(output)") }
    }
}

/// Runs `body` with the URL of a new database, set up by `prepare` (the schema, for one), dropped afterwards.
public func withScratchDatabase<T>(
    prefix: String = "test",
    prepare: (PostgresConnection) throws -> Void = { _ in },
    _ body: (String) throws -> T
) throws -> T {
    let database = try ScratchDatabase.create(prefix: prefix)
    defer { database.drop() }
    try database.withConnection(prepare)
    return try body(database.url)
}

/// The same for async tests. The blocking calls of set-up and tear-down are short.
public func withScratchDatabase<T>(
    prefix: String = "test",
    prepare: (PostgresConnection) throws -> Void = { _ in },
    _ body: (String) async throws -> T
) async throws -> T {
    let database = try ScratchDatabase.create(prefix: prefix)
    defer { database.drop() }
    try database.withConnection(prepare)
    return try await body(database.url)
}
