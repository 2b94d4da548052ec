import Foundation
import Testing

@testable import PostgresClient

@Suite("Queries against PostgreSQL") struct QueryTests {
    static let trickyStrings = [
        "", "plain", "it's", #"say "hi""#, #"back\slash"#, #"\\double"#, "a,b", "{braces}", "}{", "NULL", "null",
        " padded ", "tab\tand\nnewline", "ünïcödé ✓ 🎟️ 座席", "$1", "'; DROP TABLE x; --", "E'\\x41'",
    ]

    @Test("strings round trip unchanged, however tricky")
    func stringsRoundTrip() throws {
        try TestDatabase.withConnection { connection in
            for text in Self.trickyStrings {
                let result = try connection.query("SELECT $1::text AS value, length($1::text) AS length", [text])
                #expect(try result.rows[0].decode("value", as: String.self) == text)
                #expect(try result.rows[0].decode("length", as: Int.self) == text.unicodeScalars.count)
            }
        }
    }

    @Test("integers, booleans, doubles, dates and UUIDs round trip")
    func scalarsRoundTrip() throws {
        try TestDatabase.withConnection { connection in
            for value in [0, 1, -1, Int.max, Int.min] {
                let row = try connection.query("SELECT $1::bigint AS v", [value]).rows[0]
                #expect(try row.decode("v", as: Int.self) == value)
            }
            for value in [Int64.max, Int64.min] {
                #expect(
                    try connection.query("SELECT $1::bigint AS v", [value]).rows[0].decode("v", as: Int64.self) == value
                )
            }
            for value in [Int32.max, Int32.min, 0] {
                #expect(
                    try connection.query("SELECT $1::int AS v", [value]).rows[0].decode("v", as: Int32.self) == value
                )
            }
            for value in [true, false] {
                let row = try connection.query("SELECT $1::boolean AS v, NOT $1::boolean AS n", [value]).rows[0]
                #expect(row["v"] == (value ? "t" : "f"))
                #expect(try row.decode("v", as: Bool.self) == value)
                #expect(try row.decode("n", as: Bool.self) == !value)
            }
            for value in [0.0, -0.0, 0.1, 1.0 / 3.0, 1e300, -2.5e-300, .pi, .infinity, -.infinity] {
                let row = try connection.query("SELECT $1::float8 AS v", [value]).rows[0]
                #expect(try row.decode("v", as: Double.self) == value)
            }
            #expect(
                try connection.query("SELECT $1::float8 AS v", [Double.nan]).rows[0].decode("v", as: Double.self).isNaN
            )
            let uuid = UUID()
            #expect(try connection.query("SELECT $1::uuid AS v", [uuid]).rows[0].decode("v", as: UUID.self) == uuid)
        }
    }

    @Test("dates round trip through timestamptz to the microsecond")
    func datesRoundTrip() throws {
        try TestDatabase.withConnection { connection in
            let dates = [
                Date(timeIntervalSince1970: 1_767_269_100.123456), Date(timeIntervalSince1970: 0),
                Date(timeIntervalSince1970: -1_000_000_000.5), Date(), Date(timeIntervalSince1970: 4_102_444_800),
            ]
            for date in dates {
                let row = try connection.query(
                    "SELECT $1::timestamptz AS v, extract(epoch FROM $1::timestamptz) AS e",
                    [date]
                ).rows[0]
                let back = try row.decode("v", as: Date.self)
                #expect(abs(back.timeIntervalSince(date)) < 1e-6, "\(date) came back as \(back)")
                #expect(abs(try row.decode("e", as: Double.self) - date.timeIntervalSince1970) < 1e-6)
            }
            let row = try connection.query("SELECT '2026-01-01 12:05:00.123456+00'::timestamptz AS v").rows[0]
            #expect(row["v"] == "2026-01-01 12:05:00.123456+00")  // the session runs in UTC with ISO dates
            #expect(try row.decode("v", as: Date.self) == PostgresDate.parse("2026-01-01T12:05:00.123456Z"))
        }
    }

    @Test("dates decode in whatever zone the session was switched to")
    func datesInOtherZones() throws {
        try TestDatabase.withConnection { connection in
            try connection.query("SET TimeZone = 'Asia/Kolkata'")
            let row = try connection.query("SELECT '2026-01-01 12:05:00Z'::timestamptz AS v").rows[0]
            #expect(row["v"] == "2026-01-01 17:35:00+05:30")
            #expect(try row.decode("v", as: Date.self) == Date(timeIntervalSince1970: 1_767_269_100))
        }
    }

    @Test("text[] parameters reach the server element by element and come back intact")
    func textArraysRoundTrip() throws {
        try TestDatabase.withConnection { connection in
            let elements = Self.trickyStrings
            let result = try connection.query(
                "SELECT $1::text[] AS v, cardinality($1::text[]) AS n, ($1::text[])[4] AS fourth",
                [elements]
            )
            let row = result.rows[0]
            #expect(try row.decode("n", as: Int.self) == elements.count)
            #expect(try row.decode("fourth", as: String.self) == elements[3])
            #expect(try row.decode("v", as: [String].self) == elements)
            for (position, element) in elements.enumerated() {
                let match = try connection.query(
                    "SELECT ($1::text[])[$2::int] = $3::text AS same",
                    [elements, position + 1, element]
                )
                #expect(try match.rows[0].decode("same", as: Bool.self), "element \(position): \(element)")
            }
            #expect(
                try connection.query("SELECT $1::text[] AS v", [[String]()]).rows[0].decode("v", as: [String].self)
                    == []
            )
        }
    }

    @Test("text[] results decode quoted elements, and NULL elements only into optionals")
    func textArraysWithNulls() throws {
        try TestDatabase.withConnection { connection in
            let row = try connection.query(
                #"SELECT ARRAY['a', NULL, 'NULL', '', 'b"c', 'd\e', 'x,y', '{z}', ' sp ']::text[] AS v"#
            ).rows[0]
            #expect(
                try row.decode("v", as: [String?].self) == [
                    "a", nil, "NULL", "", #"b"c"#, #"d\e"#, "x,y", "{z}", " sp ",
                ]
            )
            #expect(throws: PostgresError.self) { try row.decode("v", as: [String].self) }
            let numbers = try connection.query("SELECT ARRAY[3, 1, 2] AS v, ARRAY[[1,2],[3,4]] AS m").rows[0]
            #expect(try numbers.decode("v", as: [Int].self) == [3, 1, 2])
            #expect(try numbers.decode("m", as: [[Int]].self) == [[1, 2], [3, 4]])
            let ids = [UUID(), UUID()]
            #expect(try connection.query("SELECT $1::uuid[] AS v", [ids]).rows[0].decode("v", as: [UUID].self) == ids)
        }
    }

    @Test("NULL goes in as nil and comes out as nil")
    func nulls() throws {
        try TestDatabase.withConnection { connection in
            let none: String? = nil
            let row = try connection.query(
                "SELECT $1::text AS v, $1::text IS NULL AS isnull, $2::int AS n",
                [none, nil]
            ).rows[0]
            #expect(try row.decode("isnull", as: Bool.self))
            #expect(row["v"] == nil)
            #expect(try row.decodeIfPresent("v", as: String.self) == nil)
            #expect(try row.decode("n", as: Int?.self) == nil)
            let error = postgresError { _ = try row.decode("v", as: String.self) }
            #expect(error?.kind == .decoding)
            #expect(postgresError { _ = try row.decodeIfPresent("missing", as: String.self) }?.kind == .decoding)
            let some: String? = "x"
            #expect(
                try connection.query("SELECT $1::text AS v", [some]).rows[0].decodeIfPresent("v", as: String.self)
                    == "x"
            )
        }
    }

    @Test("rows are read by column name and survive the connection")
    func rowsByName() throws {
        let result = try TestDatabase.withConnection { connection in
            try connection.query("SELECT g AS id, 'seat-' || g AS name FROM generate_series(1, 3) AS g ORDER BY g")
        }
        #expect(result.columnNames == ["id", "name"])
        #expect(result.rows.count == 3)
        #expect(result.affectedRows == 3)
        #expect(try result.rows.map { try $0.decode("name", as: String.self) } == ["seat-1", "seat-2", "seat-3"])
        #expect(result.rows[2][0] == "3")
        #expect(result.rows[0]["nope"] == nil)
        #expect(postgresError { _ = try result.rows[0].decode("id", as: Date.self) }?.kind == .decoding)
    }

    @Test("affectedRows counts inserted, updated and deleted rows")
    func affectedRows() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("seats")
            try connection.query("CREATE TEMP TABLE \(table) (id int PRIMARY KEY, state text NOT NULL)")
            #expect(
                try connection.query("INSERT INTO \(table) SELECT g, 'available' FROM generate_series(1, 5) g")
                    .affectedRows == 5
            )
            let update = try connection.query("UPDATE \(table) SET state = $1 WHERE id <= $2", ["held", 3])
            #expect(update.affectedRows == 3)
            #expect(update.commandTag == "UPDATE 3")
            #expect(try connection.query("DELETE FROM \(table) WHERE state = $1", ["held"]).affectedRows == 3)
            #expect(try connection.query("CREATE INDEX ON \(table) (state)").affectedRows == 0)
        }
    }

    @Test("prepared statements run repeatedly; preparing again is a no-op")
    func preparedStatements() throws {
        try TestDatabase.withConnection { connection in
            try connection.prepare("add", "SELECT $1::int + $2::int AS sum, $3::text[] AS tags")
            try connection.prepare("add", "SELECT $1::int + $2::int AS sum, $3::text[] AS tags")
            #expect(connection.isPrepared("add"))
            for i in 0..<5 {
                let row = try connection.execute(prepared: "add", [i, 10, ["a,b", #"c"d"#]]).rows[0]
                #expect(try row.decode("sum", as: Int.self) == i + 10)
                #expect(try row.decode("tags", as: [String].self) == ["a,b", #"c"d"#])
            }
            let error = postgresError { try connection.execute(prepared: "missing") }
            #expect(error?.sqlState == "26000")
            #expect(postgresError { try connection.prepare("add", "SELECT 2") }?.sqlState == "42P05")
        }
    }

    @Test("a script of several statements runs with simpleQuery")
    func simpleQueryScript() throws {
        try TestDatabase.withConnection { connection in
            let table = TestDatabase.uniqueName("script")
            try connection.simpleQuery(
                """
                CREATE TEMP TABLE \(table) (id int PRIMARY KEY);
                INSERT INTO \(table) VALUES (1), (2);
                INSERT INTO \(table) VALUES (3);
                """
            )
            #expect(try connection.query("SELECT count(*) AS n FROM \(table)").rows[0].decode("n", as: Int.self) == 3)
            let error = postgresError {
                try connection.simpleQuery("INSERT INTO \(table) VALUES (4); INSERT INTO \(table) VALUES (1);")
            }
            #expect(error?.sqlState == "23505")
            // One implicit transaction: the insert before the failing one is undone as well.
            #expect(try connection.query("SELECT count(*) AS n FROM \(table)").rows[0].decode("n", as: Int.self) == 3)
            try connection.simpleQuery("")
        }
    }

    @Test("errors carry SQLSTATE, message, detail and constraint, and leave the connection usable")
    func errors() throws {
        try TestDatabase.withConnection { connection in
            let syntax = postgresError { try connection.query("SELEC 1") }
            #expect(syntax?.kind == .query)
            #expect(syntax?.sqlState == "42601")
            #expect(syntax?.message.contains("syntax error") == true)
            #expect(syntax?.isRetryable == false)

            let table = TestDatabase.uniqueName("missing")
            let undefined = postgresError { try connection.query("SELECT * FROM \(table)") }
            #expect(undefined?.sqlState == PostgresError.undefinedTable)
            #expect(undefined?.message.contains(table) == true)

            let holds = TestDatabase.uniqueName("holds")
            try connection.query("CREATE TEMP TABLE \(holds) (seat text, CONSTRAINT \(holds)_seat_key UNIQUE (seat))")
            try connection.query("INSERT INTO \(holds) VALUES ($1)", ["A-1"])
            let duplicate = postgresError { try connection.query("INSERT INTO \(holds) VALUES ($1)", ["A-1"]) }
            #expect(duplicate?.sqlState == PostgresError.uniqueViolation)
            #expect(duplicate?.constraint == "\(holds)_seat_key")
            #expect(duplicate?.detail == "Key (seat)=(A-1) already exists.")
            #expect(duplicate?.isRetryable == false)
            #expect(duplicate?.description.contains("23505") == true)

            let nul = postgresError { try connection.query("SELECT $1::text", ["a\u{0}b"]) }
            #expect(nul?.kind == .query)
            #expect(try connection.query("SELECT 1 AS one").rows[0].decode("one", as: Int.self) == 1)
            #expect(connection.isOpen)
        }
    }

    @Test("serialization failures and deadlocks are retryable, other server errors are not")
    func retryableStates() throws {
        try TestDatabase.withConnection { connection in
            for (state, retryable) in [
                ("40001", true), ("40P01", true), ("23505", false), ("P0001", false), ("22P02", false),
            ] {
                let error = postgresError {
                    try connection.query("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '\(state)'; END $$")
                }
                #expect(error?.sqlState == state)
                #expect(error?.kind == .query)
                #expect(error?.isRetryable == retryable, "\(state)")
            }
            #expect(connection.isOpen)
        }
    }
}
