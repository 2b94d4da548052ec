import Foundation
import Testing

@testable import PostgresClient

@Suite("Connection failures") struct ConnectionFailureTests {
    /// The server trusts no one over TCP (pg_hba.conf: scram-sha-256 for 127.0.0.1 and ::1), so a wrong password
    /// for the real role is refused by the server itself.
    @Test("a wrong password fails with libpq's message and never shows the password")
    func wrongPassword() throws {
        let password = "wrong-" + UUID().uuidString
        let url = "postgresql://postgres:\(password)@127.0.0.1:5432/inventory_db"
        do {
            _ = try PostgresConnection(url: url, logger: TestDatabase.logger)
            Issue.record("connected with a wrong password")
        } catch {
            #expect(error.kind == .connectionFailed)
            #expect(error.message.contains("password authentication failed for user \"postgres\""), "\(error)")
            #expect(!error.description.contains(password))
            #expect(!"\(error)".contains(password))
            #expect(error.isRetryable == false)
        }
    }

    @Test("a server that is not listening fails fast and is retryable")
    func notListening() throws {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try PostgresConnection(
                url: "postgresql://postgres:secret-pw@localhost:5999/inventory_db?connect_timeout=30",
                logger: TestDatabase.logger
            )
            Issue.record("connected to a closed port")
        } catch {
            #expect(error.kind == .connectionFailed)
            #expect(error.message.contains("5999"), "\(error)")
            #expect(error.isRetryable)
            #expect(!error.description.contains("secret-pw"))
        }
        // Refused at once, not after the 30 s connect timeout.
        #expect(start.duration(to: clock.now) < .seconds(15))
    }

    @Test("an unparsable URL fails without echoing its password")
    func badURL() throws {
        for url in [
            "postgresql://postgres:hunter2%zz@localhost:5432/db", "postgresql://postgres:hunter2@localhost:notaport/db",
            "postgresql://postgres:hunter2@local host/db?bogus=1",
        ] {
            do {
                _ = try PostgresConnection(url: url, logger: TestDatabase.logger)
                Issue.record("connected with \(url)")
            } catch {
                #expect(error.kind == .connectionFailed)
                #expect(!error.description.contains("hunter2"), "\(error)")
            }
        }
    }

    @Test("a new connection runs in UTC with ISO dates and UTF-8")
    func sessionSettings() throws {
        try TestDatabase.withConnection { connection in
            let row = try connection.query(
                "SELECT current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds, current_setting('client_encoding') AS enc, current_setting('application_name') AS app, pg_backend_pid() AS pid"
            ).rows[0]
            #expect(row["tz"] == "UTC")
            #expect(row["ds"]?.hasPrefix("ISO") == true)
            #expect(row["enc"] == "UTF8")
            #expect(row["app"] == "seat-inventory")
            #expect(try row.decode("pid", as: Int32.self) == connection.backendPID)
        }
    }

    @Test("a URL's own settings are kept")
    func urlSettings() throws {
        let url =
            TestDatabase.url + (TestDatabase.url.contains("?") ? "&" : "?") + "application_name=probe&connect_timeout=3"
        let connection = try PostgresConnection(url: url, logger: TestDatabase.logger)
        defer { connection.close() }
        #expect(try connection.query("SELECT current_setting('application_name') AS app").rows[0]["app"] == "probe")
    }

    @Test("TCP keepalives by default on both ends (a vanished peer is noticed in seconds); a URL's own win")
    func keepalives() throws {
        let query =
            "SELECT current_setting('tcp_keepalives_idle') AS idle, current_setting('tcp_keepalives_interval') AS interval, current_setting('tcp_keepalives_count') AS count, current_setting('tcp_user_timeout') AS timeout"
        // Over TCP: a Unix socket has no keepalives, and the server reads these as 0 there.
        try TestDatabase.withConnection { connection in
            let row = try connection.query(query).rows[0]
            #expect([row["idle"], row["interval"], row["count"], row["timeout"]] == ["2", "1", "3", "5000"])
        }
        let separator = TestDatabase.url.contains("?") ? "&" : "?"
        let own = try PostgresConnection(
            url: TestDatabase.url + separator + "keepalives_idle=7&tcp_user_timeout=9000",
            logger: TestDatabase.logger
        )
        defer { own.close() }
        let row = try own.query(query).rows[0]
        #expect([row["idle"], row["interval"], row["count"], row["timeout"]] == ["7", "1", "3", "9000"])
        let off = try PostgresConnection(
            url: TestDatabase.url + separator + "keepalives=0",
            logger: TestDatabase.logger
        )
        defer { off.close() }
        // Off: neither end asks; the server shows the operating system's default (7200 on Linux).
        #expect(try off.query(query).rows[0]["idle"] != "2")
    }

    /// Kills `connection`'s server process from another connection and waits (server-side) until it is gone.
    static func terminate(_ connection: PostgresConnection) throws {
        try TestDatabase.withConnection { killer in
            let row = try killer.query("SELECT pg_terminate_backend($1::int, 5000) AS done", [connection.backendPID])
                .rows[0]
            #expect(try row.decode("done", as: Bool.self))
        }
    }

    @Test("a connection killed by the server fails the next call as lost and retryable, then reset() restores it")
    func killedConnection() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        try connection.prepare("probe", "SELECT $1::int * 2 AS v")
        let channel = TestDatabase.uniqueName("reset_chan")
        try connection.listen(channel)
        let oldPID = connection.backendPID
        try Self.terminate(connection)

        let lost = postgresError { try connection.query("SELECT 1") }
        #expect(lost?.kind == .connectionLost)
        #expect(lost?.isRetryable == true)
        #expect(lost?.sqlState == "57P01", "\(String(describing: lost))")
        #expect(lost?.message.contains("terminating connection due to administrator command") == true)
        #expect(!connection.isOpen)

        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<100 {
            #expect(postgresError { try connection.query("SELECT 1") }?.kind == .connectionLost)
        }
        #expect(postgresError { try connection.execute(prepared: "probe", [1]) }?.kind == .connectionLost)
        #expect(
            postgresError { _ = try connection.waitForNotifications(timeout: .seconds(30)) }?.kind == .connectionLost
        )
        // At once, not after the wait's 30 s: far from any bound a loaded machine could reach.
        #expect(start.duration(to: clock.now) < .seconds(15))

        try connection.reset()
        #expect(connection.isOpen)
        #expect(connection.backendPID != oldPID)
        #expect(try connection.execute(prepared: "probe", [21]).rows[0].decode("v", as: Int.self) == 42)
        #expect(try connection.query("SELECT current_setting('TimeZone') AS tz").rows[0]["tz"] == "UTC")
        try TestDatabase.withConnection { try $0.notify(channel, payload: "after reset") }
        let notifications = try connection.waitForNotifications(timeout: .seconds(5))
        #expect(notifications.map(\.payload) == ["after reset"])
    }

    @Test("a connection killed while waiting for notifications reports the loss")
    func killedWhileWaiting() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        try connection.listen(TestDatabase.uniqueName("chan"))
        try Self.terminate(connection)
        let error = postgresError { _ = try connection.waitForNotifications(timeout: .seconds(5)) }
        #expect(error?.kind == .connectionLost)
        #expect(error?.isRetryable == true)
        #expect(!connection.isOpen)
    }

    @Test("a connection lost inside a transaction surfaces the original error, not a rollback failure")
    func killedInTransaction() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let error = postgresError {
            try connection.transaction { connection in
                try connection.query("SELECT 1")
                try Self.terminate(connection)
                try connection.query("SELECT 2")
            }
        }
        #expect(error?.kind == .connectionLost)
        #expect(error?.isRetryable == true)
        #expect(!connection.isOpen)
    }

    @Test("calls after close() fail fast; close is idempotent; reset after close is refused")
    func closed() throws {
        let connection = try TestDatabase.connect()
        connection.close()
        connection.close()
        #expect(!connection.isOpen)
        #expect(postgresError { try connection.query("SELECT 1") }?.kind == .connectionLost)
        #expect(postgresError { try connection.reset() }?.kind == .connectionFailed)
    }
}
