/// One schema change: applied once, in its own transaction, recorded in `schema_migrations`.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var sql: String

    init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// A migration whose SQL is a file of `Storage/SQL`, embedded in the binary at build time.
    init(version: Int, name: String, file: [UInt8]) {
        self.init(version: version, name: name, sql: String(decoding: file, as: UTF8.self))
    }
}

/// The schema, oldest first. The SQL itself is written in one place only: `Storage/SQL/NNNN_*.sql`,
/// one file per migration, which SwiftPM embeds in the binary (`PackageResources`, decision 0002) and
/// `bench/pgbench/setup.sh` runs with `psql -f`. This list gives each file its version and the name
/// recorded in `schema_migrations`. Never edit a migration that has shipped: add a new file and a new
/// entry. (SwiftPM names a file's bytes after the file, with the leading digit and the dots turned
/// into `_`: `0002_functions.sql` is `PackageResources._002_functions_sql`.) Decision 0002 explains the
/// tables, the guards and the functions.
public enum Migrations {
    public static let all: [Migration] = [
        Migration(
            version: 1,
            name: "seat_states, holds, outbox and their guards",
            file: PackageResources._001_tables_and_guards_sql
        ),
        Migration(
            version: 2,
            name: "one function per operation",
            file: PackageResources._002_functions_sql
        ),
        Migration(
            version: 3,
            name: "notify the outbox relay after commit, not inside the writing transaction",
            file: PackageResources._003_notify_after_commit_sql
        ),
        Migration(
            version: 4,
            name: "hold.get checks the hold's owner",
            file: PackageResources._004_hold_get_owner_sql
        ),
        Migration(
            version: 5,
            name: "per-seat versions; events name exactly the seats they changed",
            file: PackageResources._005_seat_versions_sql
        ),
        Migration(
            version: 6,
            name: "idempotency records: refusals kept, derived keys, retention",
            file: PackageResources._006_idempotency_records_sql
        ),
        Migration(
            version: 7,
            name: "the per-user seat limit, counted under a (user, showtime) advisory lock",
            file: PackageResources._007_seat_limit_sql
        ),
        Migration(
            version: 8,
            name: "venue features: seat metadata, best-available holds, hold extensions",
            file: PackageResources._008_venue_features_sql
        ),
        Migration(
            version: 9,
            name: "seat history",
            file: PackageResources._009_seat_history_sql
        ),
        Migration(
            version: 10,
            name: "best-available holds under the per-user seat limit",
            file: PackageResources._010_best_available_seat_limit_sql
        ),
        Migration(
            version: 11,
            name: "the expiry sweep in set operations",
            file: PackageResources._011_set_based_sweep_sql
        ),
        Migration(
            version: 12,
            name: "group commit: several holds decided in one transaction",
            file: PackageResources._012_group_commit_sql
        ),
        Migration(
            version: 13,
            name: "availability changes: what the core's availability snapshots revalidate against",
            file: PackageResources._013_availability_changes_sql
        ),
    ]
}
