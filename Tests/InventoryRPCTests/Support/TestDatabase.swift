import PostgresClient
import TestSupport

@testable import InventoryRPC

/// The storage tests' name for the shared scratch-database fixture.
typealias TestDatabase = ScratchDatabase

/// Runs `body` with the URL of a new database (migrated unless `migrated: false`), dropped afterwards.
func withTestDatabase<T>(migrated: Bool = true, _ body: (String) throws -> T) throws -> T {
    try withScratchDatabase(prefix: "inv_test", prepare: { try migrate($0, migrated) }, body)
}

/// The same for async tests. The blocking database calls of set-up and tear-down are short.
func withTestDatabase<T>(migrated: Bool = true, _ body: (String) async throws -> T) async throws -> T {
    try await withScratchDatabase(prefix: "inv_test", prepare: { try migrate($0, migrated) }, body)
}

private func migrate(_ connection: PostgresConnection, _ migrated: Bool) throws {
    if migrated { try Migrator.migrate(connection, logger: TestDatabase.logger) }
}
