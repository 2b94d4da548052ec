import Testing

@testable import PostgresClient

@Suite("PostgresArrayLiteral") struct PostgresArrayLiteralTests {
    @Test("quotes and escapes every element")
    func encodes() {
        #expect(PostgresArrayLiteral.encode([String]()) == "{}")
        #expect(PostgresArrayLiteral.encode(["a", "b c"]) == #"{"a","b c"}"#)
        #expect(
            PostgresArrayLiteral.encode([#"x"y"#, #"back\slash"#, "", "NULL", "{,}"])
                == #"{"x\"y","back\\slash","","NULL","{,}"}"#
        )
    }

    @Test("decodes PostgreSQL's output: quoted, unquoted, NULL and empty elements")
    func decodes() throws {
        #expect(try PostgresArrayLiteral.decode("{}") == [])
        #expect(try PostgresArrayLiteral.decode("{a,b}") == ["a", "b"])
        #expect(try PostgresArrayLiteral.decode(#"{"a b",NULL,"NULL","",null}"#) == ["a b", nil, "NULL", "", nil])
        #expect(try PostgresArrayLiteral.decode(#"{"x\"y","back\\slash","{,}"}"#) == [#"x"y"#, #"back\slash"#, "{,}"])
        #expect(try PostgresArrayLiteral.decode("[0:1]={7,8}") == ["7", "8"])
        #expect(try PostgresArrayLiteral.decode(#"{{a,"b}"},{c,d}}"#) == [#"{a,"b}"}"#, "{c,d}"])
        #expect(try PostgresArrayLiteral.decode(" { a , b\\,c } ") == ["a", "b,c"])
    }

    @Test("rejects malformed literals", arguments: ["", "a,b", "{a", #"{"a}"#, "{a,}", "{a}b", "{,a}", #"{a"b}"#])
    func rejects(text: String) {
        #expect(throws: PostgresError.self) { try PostgresArrayLiteral.decode(text) }
    }

    @Test("decodes typed arrays, optional elements and nested arrays")
    func decodesTyped() throws {
        #expect(try [Int](postgresText: "{1,-2,3}") == [1, -2, 3])
        #expect(try [String?](postgresText: "{a,NULL}") == ["a", nil])
        #expect(throws: PostgresError.self) { try [String](postgresText: "{a,NULL}") }
        #expect(try [[String]](postgresText: #"{{a,"b c"},{d,e}}"#) == [["a", "b c"], ["d", "e"]])
    }
}
