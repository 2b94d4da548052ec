import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

@Suite("Storage: migrations")
struct StorageMigrationTests {
    @Test("the migrations are exactly the files of Storage/SQL, in version order (what setup.sh runs with psql)")
    func migrationsAreTheSQLFiles() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/InventoryRPC/Storage/SQL").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(files.count == Migrations.all.count)
        for (file, migration) in zip(files, Migrations.all) {
            #expect(file.hasSuffix(".sql"))
            #expect(
                file.hasPrefix(String(format: "%04d_", migration.version)),
                "\(file) is not version \(migration.version)"
            )
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            #expect(text == migration.sql, "\(file) differs from the SQL migration \(migration.version) runs")
        }
    }

    @Test("migrating twice applies everything once, then nothing")
    func migrateTwice() throws {
        try withTestDatabase(migrated: false) { url in
            let connection = try TestDatabase.connect(url)
            defer { connection.close() }
            let all = Migrations.all.map(\.version)
            #expect(try Migrator.migrate(connection, logger: TestDatabase.logger) == all)
            #expect(try Migrator.migrate(connection, logger: TestDatabase.logger) == [])
            let versions = try connection.query("SELECT version FROM schema_migrations ORDER BY version").rows
                .map { try $0.decode("version", as: Int.self) }
            #expect(versions == all)
        }
    }

    @Test("two migrators racing on a fresh database both succeed and apply each migration once")
    func concurrentMigrators() throws {
        try withTestDatabase(migrated: false) { url in
            let applied = try onThreads(2) { _, start in
                let connection = try TestDatabase.connect(url)
                defer { connection.close() }
                start()
                return try Migrator.migrate(connection, logger: TestDatabase.logger)
            }
            // One of them did all the work; the other waited on the advisory lock and found nothing to do.
            #expect(applied.flatMap { $0 }.sorted() == Migrations.all.map(\.version))
            #expect(applied.contains([]))
            let connection = try TestDatabase.connect(url)
            defer { connection.close() }
            let count = try connection.query("SELECT count(*) AS n FROM schema_migrations").rows[0].decode(
                "n",
                as: Int.self
            )
            #expect(count == Migrations.all.count)
        }
    }

    @Test("a failing migration leaves nothing behind and is not recorded")
    func failingMigrationRollsBack() throws {
        try withTestDatabase(migrated: false) { url in
            let connection = try TestDatabase.connect(url)
            defer { connection.close() }
            let broken = Migration(
                version: 1,
                name: "broken",
                sql: "CREATE TABLE t (id int); SELECT no_such_function();"
            )
            #expect(throws: PostgresError.self) {
                try Migrator.migrate(connection, migrations: [broken], logger: TestDatabase.logger)
            }
            let tables = try connection.query("SELECT count(*) AS n FROM pg_tables WHERE tablename = 't'").rows[0]
            #expect(try tables.decode("n", as: Int.self) == 0)
            let recorded = try connection.query("SELECT count(*) AS n FROM schema_migrations").rows[0]
            #expect(try recorded.decode("n", as: Int.self) == 0)
            // The advisory lock was given back: a second migrator does not hang.
            #expect(try Migrator.migrate(connection, logger: TestDatabase.logger) == Migrations.all.map(\.version))
        }
    }
}
