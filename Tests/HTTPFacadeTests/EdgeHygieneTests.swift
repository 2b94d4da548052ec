import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Everything the facade sends back until it closes the connection (or the timeout passes).
func rawExchange(port: Int, _ bytes: [UInt8], timeout: Duration = .seconds(5)) throws -> String {
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
    return String(decoding: data, as: UTF8.self)
}

/// A facade without a core (the hygiene answers come before any RPC), on its own vhost.
func withFacadeOnly<T: Sendable>(_ body: @escaping @Sendable (Stack) throws -> T) async throws -> T {
    try await blocking {
        let stack = Stack()
        defer { stack.close() }
        try stack.createVhost()
        try stack.startFacade()
        return try body(stack)
    }
}

@Suite("Facade HTTP correctness: framing errors, control characters and sizes get the contract's JSON")
struct EdgeHygieneTests {
    private func body(_ text: String) -> [String: Any] {
        guard let start = text.range(of: "\r\n\r\n") else { return [:] }
        let data = Data(text[start.upperBound...].utf8)
        return ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["error"] as? [String: Any] ?? [:]
    }

    private func field(_ error: [String: Any]) -> String? {
        (error["details"] as? [String: Any])?["field"] as? String
    }

    @Test("each refusal has its status, code, JSON body and Connection: close; nothing behind it is served")
    func refusals() async throws {
        try await withFacadeOnly { stack in
            let port = stack.port
            let smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            let cases: [(String, Int, String, String?)] = [
                (
                    "POST /release HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
                        + smuggled, 400, "VALIDATION_FAILED", "content-length"
                ),
                (
                    "POST /release HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                        + smuggled, 400, "VALIDATION_FAILED", "transfer-encoding"
                ),
                (
                    "GET /availability?showtimeId=st2%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "VALIDATION_FAILED",
                    "showtimeId"
                ),
                ("GET /holds/h%0D%0Ax HTTP/1.1\r\nHost: x\r\n\r\n", 400, "VALIDATION_FAILED", "path"),
                ("GET /healthz HTTP/1.1\r\n\r\n", 400, "VALIDATION_FAILED", "host"),
                (
                    "GET /" + String(repeating: "a", count: 9_000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                    "URI_TOO_LONG", nil
                ),
                (
                    "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: 17_000) + "\r\n\r\n",
                    431, "HEADERS_TOO_LARGE", nil
                ),
            ]
            for (request, status, code, expectedField) in cases {
                let text = try rawExchange(port: port, Array(request.utf8))
                let comment = Comment(rawValue: String(request.prefix(60)))
                #expect(text.hasPrefix("HTTP/1.1 \(status) "), comment)
                #expect(
                    text.matches(of: try Regex(#"HTTP/1\.1 \d{3} "#)).count == 1,
                    "one answer only: \(comment): \(text)"
                )
                #expect(text.lowercased().contains("content-type: application/json"), comment)
                #expect(text.lowercased().contains("connection: close"), comment)
                let error = body(text)
                #expect(error["code"] as? String == code, comment)
                #expect(error["message"] is String, comment)
                if let expectedField {
                    #expect(field(error) == expectedField, comment)
                }
            }
        }
    }
}
