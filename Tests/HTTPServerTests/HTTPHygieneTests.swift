import Dispatch
import Foundation
import HTTPServer
import Synchronization
import TestSupport
import Testing

/// Raw bytes to the daemon, everything it sends back until it closes (or `timeout`).
private func exchange(port: Int, _ bytes: [UInt8], timeout: Duration = .seconds(5)) throws -> [UInt8] {
    let socket = try HTTPTestClient.open(port: port, timeout: timeout)
    defer { close(socket) }
    try HTTPTestClient.send(socket, bytes)
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        data += chunk[0..<count]
    }
    return data
}

private func responses(in data: [UInt8]) -> [String] {
    String(decoding: data, as: UTF8.self).components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0 }
}

final class HandledCount: Sendable {
    let value = Atomic<Int>(0)
}

@Suite("HTTPDaemon refuses what it cannot read safely: 400 and the connection closed")
struct HTTPHygieneTests {
    /// A daemon whose handler counts its calls and whose rejections are plain text with the kind.
    private func start(handled: HandledCount) throws -> HTTPDaemon {
        try startDaemon(handler: { _, responder in
            handled.value.add(1, ordering: .relaxed)
            responder.respond(.text(200, "handled"))
        })
    }

    @Test(
        "a request smuggled behind a framing error is never served",
        arguments: [
            "Content-Length: 5\r\nContent-Length: 45\r\n",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Content-Length : 45\r\n",
        ]
    )
    func smuggling(framing: String) async throws {
        let handled = HandledCount()
        let daemon = try start(handled: handled)
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        let bytes = Array("POST /hold HTTP/1.1\r\nHost: x\r\n\(framing)\r\n0\r\n\r\n\(smuggled)".utf8)
        let data = try await blocking { try exchange(port: port, bytes) }
        let answers = responses(in: data)
        #expect(answers.count == 1, "\(answers)")
        #expect(answers.first?.hasPrefix("400 ") == true)
        #expect(answers.first?.lowercased().contains("connection: close") == true)
        #expect(handled.value.load(ordering: .relaxed) == 0)
    }

    @Test(
        "a control character in the target, raw or percent-encoded, is 400 before the handler",
        arguments: [
            "/availability?showtimeId=st2%00", "/availability?showtimeId=st2%0d%0aX-Injected:%201",
            "/holds/ab%00cd", "/availability?showtimeId=st2\u{01}", "/holds/ab\u{0}cd",
        ]
    )
    func controlCharacters(target: String) async throws {
        let handled = HandledCount()
        let daemon = try start(handled: handled)
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let data = try await blocking {
            try exchange(port: port, Array("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        }
        #expect(responses(in: data).first?.hasPrefix("400 ") == true, "\(String(decoding: data, as: UTF8.self))")
        #expect(handled.value.load(ordering: .relaxed) == 0)
    }

    @Test("a long target is 414 and a big head 431 from the daemon's own answer, not the library's")
    func sizes() async throws {
        let handled = HandledCount()
        let daemon = try start(handled: handled)
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let long = "/" + String(repeating: "a", count: 12_000)
        let big = "X-Big: " + String(repeating: "b", count: 20_000) + "\r\n"
        let (uri, head) = try await blocking {
            (
                try exchange(port: port, Array("GET \(long) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                try exchange(port: port, Array("GET / HTTP/1.1\r\nHost: x\r\n\(big)\r\n".utf8))
            )
        }
        let uriText = String(decoding: uri, as: UTF8.self)
        let headText = String(decoding: head, as: UTF8.self)
        #expect(uriText.hasPrefix("HTTP/1.1 414 "))
        #expect(uriText.contains("text/plain"), "the configured rejection answer, not libmicrohttpd's HTML")
        #expect(headText.hasPrefix("HTTP/1.1 431 "))
        #expect(headText.contains("text/plain"))
        #expect(handled.value.load(ordering: .relaxed) == 0)
    }

    @Test("a clean request on the same kind of connection is still served")
    func cleanRequestServed() async throws {
        let handled = HandledCount()
        let daemon = try start(handled: handled)
        defer { daemon.shutdown(timeout: .seconds(2)) }
        let port = daemon.port
        let response = try await blocking {
            try HTTPTestClient.request(port: port, "GET", "/availability?showtimeId=st2&x=a%20b")
        }
        #expect(response.status == 200)
        #expect(handled.value.load(ordering: .relaxed) == 1)
    }
}
