import Dispatch
import Foundation
import HTTPServer
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A raw HTTP/1.1 client over a blocking socket: full control over how bytes reach the server (chunks,
/// `Expect`, keep-alive), and no client-side connection pool to hide server behaviour.
final class TestConnection {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    struct Response {
        var status: Int
        /// Names lowercased, in order.
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0 == name.lowercased() }?.1
        }

        var text: String { String(decoding: body, as: UTF8.self) }
    }

    private let socket: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    /// Connects to 127.0.0.1:`port`; every read gives up after `timeout` (so a test fails, not hangs).
    init(port: Int, timeout: Duration = .seconds(10)) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(socket)
            throw Failure(description: "connect to port \(port): \(message)")
        }
    }

    deinit {
        close()
    }

    func close() {
        if !closed {
            closed = true
            Glibc.close(socket)
        }
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes {
                Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard count > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            sent += count
        }
    }

    func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    /// Sends a request head; `Content-Length` is added for a body unless `headers` has a framing header.
    func sendHead(method: String, target: String, headers: [(String, String)] = [], bodyLength: Int? = nil) throws {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
        }
        let framed = headers.contains { ["content-length", "transfer-encoding"].contains($0.0.lowercased()) }
        if let bodyLength, !framed {
            head += "Content-Length: \(bodyLength)\r\n"
        }
        try send(head + "\r\n")
    }

    func request(
        _ method: String,
        _ target: String,
        headers: [(String, String)] = [],
        body: [UInt8]? = nil
    ) throws -> Response {
        try sendHead(method: method, target: target, headers: headers, bodyLength: body?.count)
        if let body {
            try send(body)
        }
        return try readResponse()
    }

    /// Reads one final response (interim 1xx responses are skipped), framed by `Content-Length` or by
    /// the connection closing.
    func readResponse() throws -> Response {
        while true {
            let headEnd = try fill { Self.find([13, 10, 13, 10], in: $0) }
            let head = String(decoding: buffer[..<headEnd], as: UTF8.self)
            buffer.removeFirst(headEnd + 4)
            var lines = head.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst().split(separator: " ")
            guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
                throw Failure(description: "bad status line in \(head)")
            }
            let headers = lines.compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (
                    line[..<colon].lowercased(),
                    line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                )
            }
            if (100..<200).contains(status) {
                continue
            }
            var response = Response(status: status, headers: headers, body: [])
            if let length = response.header("content-length").flatMap(Int.init) {
                _ = try fill { $0.count >= length ? length : nil }
                response.body = Array(buffer[..<length])
                buffer.removeFirst(length)
            } else {
                while try receive() > 0 {}
                response.body = buffer
                buffer = []
            }
            return response
        }
    }

    /// Reads until `complete` finds what it needs in the buffer.
    private func fill(_ complete: ([UInt8]) -> Int?) throws -> Int {
        while true {
            if let found = complete(buffer) {
                return found
            }
            if try receive() == 0 {
                throw Failure(description: "connection closed after \(buffer.count) bytes")
            }
        }
    }

    private func receive() throws -> Int {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else {
            throw Failure(description: "recv: \(String(cString: strerror(errno)))")
        }
        buffer.append(contentsOf: chunk[..<count])
        return count
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count)
        where haystack[start..<start + needle.count].elementsEqual(needle) {
            return start
        }
        return nil
    }
}

/// Runs blocking client work on a thread of its own: off Swift's cooperative pool, and off Dispatch's
/// global queue too (on 2 cores it runs about 2 items at once, so blocked clients would starve it).
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(with: Result { try work() })
        }.start()
    }
}

/// Starts a daemon on a free loopback port. Callers `defer` its shutdown.
func startDaemon(
    maxBodyBytes: Int = 65_536,
    threads: Int = 2,
    handler: @escaping @Sendable (HTTPRequest, HTTPResponder) -> Void
) throws -> HTTPDaemon {
    var configuration = HTTPServerConfiguration(port: 0, bindAddress: "127.0.0.1", maxBodyBytes: maxBodyBytes)
    configuration.threads = threads
    return try HTTPDaemon(configuration: configuration, logger: testLogger, handler: handler)
}

let testLogger: Logger = {
    var logger = Logger(label: "HTTPServerTests")
    logger.logLevel = .info
    return logger
}()

/// A value set on a daemon thread and read by the test.
final class Captured<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)

    func set(_ newValue: Value) {
        value.withLock { $0 = newValue }
    }

    var current: Value? {
        value.withLock { $0 }
    }
}

/// Polls `condition` every 5 ms for at most `limit`: for conditions nothing signals.
func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        if ContinuousClock.now >= deadline {
            return false
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}

extension HTTPResponse {
    static func text(_ status: Int, _ text: String, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain")] + headers, body: Array(text.utf8))
    }
}
