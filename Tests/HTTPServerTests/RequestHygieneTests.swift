import Testing

@testable import HTTPServer

@Suite("RequestHygiene: what a request head must pass before a handler sees it")
struct RequestHygieneTests {
    private func target(_ text: String, max: Int = 8_192) -> HTTPRejection? {
        RequestHygiene.checkTarget(Array(text.utf8), maxBytes: max)
    }

    private func head(_ fields: [(String, String)], version: String = "HTTP/1.1", max: Int = 16_384) -> HTTPRejection? {
        RequestHygiene.checkHead(
            version: version,
            fields: fields.map { RequestHygiene.Field($0.0, $0.1) },
            targetBytes: 10,
            maxHeaderBytes: max
        )
    }

    @Test("ordinary targets pass, percent-encoded printable bytes and + included")
    func ordinaryTargets() {
        #expect(target("/availability?showtimeId=st2") == nil)
        #expect(target("/search/a%20b?q=a+b&tag=a%26b&flag") == nil)
        #expect(target("/holds/h%C3%A9") == nil)
        #expect(target("/x?a=%zz&b=%4") == nil)
    }

    @Test("a control character in the query, raw or percent-encoded, names the argument")
    func controlInQuery() {
        for query in [
            "showtimeId=st2%00", "showtimeId=st2%0a", "showtimeId=st2%1F", "showtimeId=st%7f2", "showtimeId=st2\u{01}",
        ] {
            let rejection = target("/availability?other=1&" + query)
            #expect(rejection?.kind == .controlCharacter, "\(query)")
            #expect(rejection?.location == .query("showtimeId"), "\(query)")
            #expect(rejection?.status == 400)
        }
        #expect(target("/availability?a%00b=1")?.location == .query(""))
    }

    @Test("a control character in the path is refused")
    func controlInPath() {
        #expect(target("/holds/ab%00cd")?.location == .path)
        #expect(target("/holds/ab%0D%0Acd")?.location == .path)
        #expect(target("/holds/ab\u{7F}")?.location == .path)
    }

    @Test("a target over the limit is 414")
    func longTarget() {
        #expect(target(String(repeating: "a", count: 100), max: 99)?.status == 414)
        #expect(target(String(repeating: "a", count: 99), max: 99) == nil)
    }

    @Test("framing that a proxy may read differently is refused")
    func framing() {
        #expect(head([("Host", "x"), ("Content-Length", "5")]) == nil)
        #expect(head([("Host", "x"), ("Transfer-Encoding", "chunked")]) == nil)
        #expect(head([("Host", "x"), ("Transfer-Encoding", " Chunked ")]) == nil)
        let refused: [[(String, String)]] = [
            [("Host", "x"), ("Content-Length", "5"), ("Content-Length", "40")],
            [("Host", "x"), ("Content-Length", "5"), ("Content-Length", "5")],
            [("Host", "x"), ("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            [("Host", "x"), ("Transfer-Encoding", "gzip, chunked")],
            [("Host", "x"), ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
            [("Host", "x"), ("Transfer-Encoding", "identity")],
            [("Host", "x"), ("Host", "y")],
            [("Content-Length", "0")],
            [("Host", "x"), ("Content-Length ", "5")],
            [("Host", "x"), ("X(A)", "5")],
        ]
        for fields in refused {
            let rejection = head(fields)
            #expect(rejection?.kind == .framing, "\(fields)")
            #expect(rejection?.status == 400, "\(fields)")
        }
        #expect(head([("Content-Length", "0")], version: "HTTP/1.0") == nil)
    }

    @Test("a control character in a header value is refused; a tab is not")
    func controlInHeader() {
        #expect(head([("Host", "x"), ("X-A", "a\tb")]) == nil)
        let rejection = head([("Host", "x"), ("Idempotency-Key", "k\u{01}")])
        #expect(rejection?.kind == .controlCharacter)
        #expect(rejection?.location == .header("idempotency-key"))
        #expect(head([("Host", "x"), ("X-A", "a\u{0}b")])?.kind == .controlCharacter)
    }

    @Test("a head over the limit is 431")
    func bigHead() {
        #expect(head([("Host", "x"), ("X-A", String(repeating: "a", count: 200))], max: 200)?.status == 431)
        #expect(head([("Host", "x"), ("X-A", String(repeating: "a", count: 100))], max: 200) == nil)
    }
}
