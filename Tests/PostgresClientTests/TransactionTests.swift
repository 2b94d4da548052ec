import Testing

@testable import PostgresClient

private struct Abort: Error {}

@Suite("Transactions") struct TransactionTests {
    private func count(_ connection: PostgresConnection, _ table: String) throws -> Int {
        try connection.query("SELECT count(*) AS n FROM \(table)").rows[0].decode("n", as: Int.self)
    }

    @Test("a transaction commits what its body did and returns its value")
    func commits() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("tx")
            try connection.query("CREATE TEMP TABLE \(table) (id int)")
            let value = try connection.transaction { connection in
                try connection.query("INSERT INTO \(table) VALUES (1), (2)")
                #expect(connection.isInTransaction)
                return "done"
            }
            #expect(value == "done")
            #expect(!connection.isInTransaction)
            #expect(try count(connection, table) == 2)
        }
    }

    @Test("a body that throws rolls back and its own error comes out")
    func rollsBackOnThrow() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("tx")
            try connection.query("CREATE TEMP TABLE \(table) (id int)")
            var caught: (any Error)?
            do {
                try connection.transaction { connection in
                    try connection.query("INSERT INTO \(table) VALUES (1)")
                    throw Abort()
                }
            } catch {
                caught = error
            }
            #expect(caught is Abort)
            #expect(!connection.isInTransaction)
            #expect(try count(connection, table) == 0)

            let error = postgresError {
                try connection.transaction { connection in
                    try connection.query("INSERT INTO \(table) VALUES (1)")
                    try connection.query("SELECT 1/0")
                }
            }
            #expect(error?.sqlState == "22012")
            #expect(try count(connection, table) == 0)
        }
    }

    @Test("a swallowed error does not turn into a silent rollback; nesting is refused")
    func swallowedErrors() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("tx")
            try connection.query("CREATE TEMP TABLE \(table) (id int)")
            let error = postgresError {
                try connection.transaction { connection in
                    try connection.query("INSERT INTO \(table) VALUES (1)")
                    _ = try? connection.query("SELECT 1/0")
                }
            }
            #expect(error?.sqlState == "25P02")
            #expect(!connection.isInTransaction)
            #expect(try count(connection, table) == 0)

            let nested = postgresError {
                try connection.transaction { connection in
                    try connection.transaction { _ in }
                }
            }
            #expect(nested?.kind == .query)
            #expect(!connection.isInTransaction)
        }
    }
}
