import Testing

@testable import PostgresClient

@Suite("Pipelines") struct PipelineTests {
    private func ids(_ connection: PostgresConnection, _ table: String) throws -> [Int] {
        try connection.query("SELECT id FROM \(table) ORDER BY id").rows.map { try $0.decode("id", as: Int.self) }
    }

    @Test("a transaction sent as a pipeline commits and returns every statement's result")
    func commits() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("pipe")
            try connection.query("CREATE TEMP TABLE \(table) (id int PRIMARY KEY, state text)")
            try connection.prepare("\(table)_insert", "INSERT INTO \(table) VALUES ($1, $2)")
            let outcomes = try connection.pipeline([
                .query("BEGIN"),
                .query("INSERT INTO \(table) VALUES ($1, $2), ($3, $2)", [1, "held", 2]),
                .prepared("\(table)_insert", [3, nil]),
                .query("UPDATE \(table) SET state = $1 WHERE state IS NULL RETURNING id", ["sold"]),
                .query("SELECT count(*) AS n FROM \(table)"),
                .query("COMMIT"),
            ])
            #expect(outcomes.count == 6)
            let results = try outcomes.map { try $0.get() }
            #expect(results[1].affectedRows == 2)
            #expect(try results[3].rows[0].decode("id", as: Int.self) == 3)
            #expect(try results[4].rows[0].decode("n", as: Int.self) == 3)
            #expect(results[5].commandTag == "COMMIT")
            #expect(!connection.isInTransaction)
            #expect(try ids(connection, table) == [1, 2, 3])
            #expect(try connection.pipeline([]).isEmpty)
        }
    }

    @Test("a failing statement stops the rest, the transaction rolls back, and the connection stays usable")
    func failureAborts() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("pipe")
            try connection.query("CREATE TEMP TABLE \(table) (id int CONSTRAINT \(table)_pk PRIMARY KEY)")
            try connection.query("INSERT INTO \(table) VALUES (1)")
            let outcomes = try connection.pipeline([
                .query("BEGIN"),
                .query("INSERT INTO \(table) VALUES (2)"),
                .query("INSERT INTO \(table) VALUES (1)"),
                .query("INSERT INTO \(table) VALUES (3)"),
                .query("COMMIT"),
            ])
            #expect(outcomes.count == 5)
            #expect((try? outcomes[1].get()) != nil)
            guard case .failure(let error) = outcomes[2] else {
                Issue.record("the duplicate insert succeeded")
                return
            }
            #expect(error.sqlState == "23505")
            #expect(error.constraint == "\(table)_pk")
            for outcome in outcomes[3...] {
                guard case .failure(let skipped) = outcome else {
                    Issue.record("a statement after the failure ran")
                    continue
                }
                #expect(skipped.message.contains("not run"))
            }
            #expect(!connection.isInTransaction)
            #expect(try ids(connection, table) == [1])
        }
    }

    @Test("statements without BEGIN form one implicit transaction")
    func implicitTransaction() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("pipe")
            try connection.query("CREATE TEMP TABLE \(table) (id int PRIMARY KEY)")
            let outcomes = try connection.pipeline([
                .query("INSERT INTO \(table) VALUES (1)"),
                .query("INSERT INTO \(table) VALUES (1)"),
            ])
            #expect((try? outcomes[0].get()) != nil)
            #expect((try? outcomes[1].get()) == nil)
            #expect(try ids(connection, table) == [])
            #expect(!connection.isInTransaction)
        }
    }

    @Test("a parameter that cannot be sent fails the pipeline before anything runs")
    func badParameter() throws {
        try TestDatabase.withConnection { connection in
            let error = postgresError {
                _ = try connection.pipeline([.query("SELECT 1"), .query("SELECT $1::text", ["a\u{0}"])])
            }
            #expect(error?.kind == .query)
            let two = try connection.query("SELECT 2 AS two").rows[0].decode("two", as: Int.self)
            #expect(two == 2)
        }
    }

    @Test("a pipeline on a killed connection throws connectionLost")
    func killed() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        try ConnectionFailureTests.terminate(connection)
        let error = postgresError {
            _ = try connection.pipeline([.query("BEGIN"), .query("SELECT 1"), .query("COMMIT")])
        }
        #expect(error?.kind == .connectionLost)
        #expect(error?.isRetryable == true)
        #expect(!connection.isOpen)
        try connection.reset()
        #expect(try connection.pipeline([.query("SELECT 1 AS one")]).count == 1)
    }
}
