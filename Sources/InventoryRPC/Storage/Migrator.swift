import Logging
import PostgresClient

/// Applies the missing migrations. Safe to run twice and from several processes at once: a session
/// advisory lock lets one migrator work at a time, and the others then find nothing left to do.
public enum Migrator {
    /// The advisory lock key (bigint keyspace) all migrators of this schema share: "inv-migr".
    static let lockKey: Int64 = 0x696E_762D_6D69_6772

    /// Returns the versions this call applied, oldest first (empty when the schema was up to date).
    @discardableResult
    public static func migrate(_ connection: PostgresConnection, logger: Logger) throws -> [Int] {
        try migrate(connection, migrations: Migrations.all, logger: logger)
    }

    static func migrate(_ connection: PostgresConnection, migrations: [Migration], logger: Logger) throws -> [Int] {
        try connection.query("SELECT pg_advisory_lock($1)", [lockKey])
        defer {
            // If the connection died the server already dropped the session lock.
            _ = try? connection.query("SELECT pg_advisory_unlock($1)", [lockKey])
        }
        try connection.simpleQuery(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        let rows = try connection.query("SELECT version FROM schema_migrations").rows
        var applied = Set<Int>()
        for row in rows { applied.insert(try row.decode("version", as: Int.self)) }

        var done: [Int] = []
        for migration in migrations.sorted(by: { $0.version < $1.version }) where !applied.contains(migration.version) {
            logger.info(
                "applying migration",
                metadata: ["migration.version": "\(migration.version)", "migration.name": "\(migration.name)"]
            )
            try connection.transaction { connection in
                try connection.simpleQuery(migration.sql)
                try connection.query(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    [migration.version, migration.name]
                )
            }
            done.append(migration.version)
        }
        if done.isEmpty {
            logger.info("schema up to date", metadata: ["migration.version": "\(migrations.map(\.version).max() ?? 0)"])
        }
        return done
    }
}
