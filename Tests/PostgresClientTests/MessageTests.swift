import Foundation
import Logging
import TestSupport
import Testing

@testable import PostgresClient

@Suite("Messages, logs and secrets") struct MessageTests {
    @Test("libpq's verbose connection message yields the server's SQLSTATE and one clean line")
    func parsesConnectionMessages() {
        let raw = """
            FATAL:  57P01: terminating connection due to administrator command
            LOCATION:  ProcessInterrupts, postgres.c:3211
            server closed the connection unexpectedly
            \tThis probably means the server terminated abnormally
            \tbefore or while processing the request.

            """
        let (message, sqlState) = PostgresConnection.parseConnectionMessage(raw)
        #expect(sqlState == "57P01")
        #expect(
            message
                == "FATAL: terminating connection due to administrator command server closed the connection unexpectedly This probably means the server terminated abnormally before or while processing the request."
        )
        let plain = PostgresConnection.parseConnectionMessage(
            "connection to server at \"localhost\" (::1), port 5999 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n"
        )
        #expect(plain.sqlState == nil)
        #expect(
            plain.message.hasSuffix(
                "Connection refused Is the server running on that host and accepting TCP/IP connections?"
            )
        )
    }

    @Test("passwords are found in URLs, raw and percent-decoded, and scrubbed")
    func findsPasswords() {
        #expect(PostgresConnection.passwords(in: "postgresql://u:p%40ss@h:5432/db") == ["p%40ss", "p@ss"])
        #expect(PostgresConnection.passwords(in: "postgresql://u:s3cret@h/db?sslmode=disable") == ["s3cret"])
        #expect(PostgresConnection.passwords(in: "postgresql://u@h/db").isEmpty)
        #expect(PostgresConnection.passwords(in: "postgresql://h/db?user=a@b").isEmpty)
        #expect(
            PostgresConnection.redact("bad uri \"postgresql://u:s3cret@h\"", secrets: ["s3cret"])
                == "bad uri \"postgresql://u:***@h\""
        )
    }

    @Test("timeouts round up to whole milliseconds for poll()")
    func milliseconds() {
        #expect(PostgresConnection.milliseconds(.zero) == 0)
        #expect(PostgresConnection.milliseconds(.microseconds(1)) == 1)
        #expect(PostgresConnection.milliseconds(.milliseconds(1500)) == 1500)
        #expect(PostgresConnection.milliseconds(.seconds(100_000_000)) == Int32.max)
    }

    @Test("server notices go to the logger, not to stderr, and nothing logged shows the password")
    func noticesAreLogged() throws {
        let logs = LogRecorder()
        let logger = logs.logger(label: "capture")
        let connection = try PostgresConnection(url: TestDatabase.url, logger: logger)
        let missing = TestDatabase.uniqueName("absent")
        try connection.query("DROP TABLE IF EXISTS \(missing)")
        try connection.query("DO $$ BEGIN RAISE WARNING 'careful: %', 42; END $$")
        connection.close()
        let entries = logs.all
        #expect(
            entries.contains {
                $0.level == .debug && $0.message.contains(missing) && $0.message.contains("does not exist")
            }
        )
        #expect(entries.contains { $0.level == .info && $0.message.contains("careful: 42") })
        #expect(entries.contains { $0.message == "connected" && $0.metadata["db.target"] != nil })
        if let password = PostgresConnection.passwords(in: TestDatabase.url).first {
            #expect(!entries.contains { "\($0.message) \($0.metadata)".contains(":" + password + "@") })
        }
    }
}
