import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// MARK: Loopback sockets

/// The ports `freePort()` and the scripts' `free_ports` pick from: below the kernel's ephemeral range
/// (32768-60999 by default, `ip_local_port_range`), so no outgoing connection of another process can take
/// a picked port before its listener binds it (a clean-clone run once lost a core's ops port that way),
/// and clear of the fixed ports of the services, the fault runs and the cluster topologies.
public let freePortRange = 16_000..<25_000

/// The next candidate of this process: each process starts at an offset of its own (from its pid), and
/// the tests of one process never get the same port twice.
private let nextFreePort = Mutex<Int>(Int(getpid()) &* 7_919 % freePortRange.count)

/// A port nothing listens on right now, from `freePortRange` (bound once to check, released again).
public func freePort() throws -> Int {
    for _ in 0..<freePortRange.count {
        let port = nextFreePort.withLock { next in
            defer { next = (next + 1) % freePortRange.count }
            return freePortRange.lowerBound + next
        }
        if try canBind(port: port) { return port }
    }
    throw TestFailure("no free port in \(freePortRange)")
}

/// Whether a socket can bind 0.0.0.0:`port` now (it cannot while anything listens on the port, on any address).
private func canBind(port: Int) throws -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = INADDR_ANY
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
public func acceptsConnections(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return (try? connectLoopback(fd, port: port)) != nil
}

/// Connects the socket `fd` to 127.0.0.1:`port`.
public func connectLoopback(_ fd: Int32, port: Int) throws {
    var address = loopback(port: port)
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard result == 0 else { throw TestFailure("connect to port \(port): \(String(cString: strerror(errno)))") }
}

private func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

// MARK: HTTP/1.1 over raw sockets

/// One HTTP response as the tests see it.
public struct TestResponse: Sendable {
    public var status: Int
    /// Names lowercased, in order.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.0 == name.lowercased() }?.1
    }

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as JSON (objects as dictionaries; empty when it is not an object).
    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    /// `error.code` of an error body.
    public var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
}

/// A raw HTTP/1.1 client over blocking sockets, one request per connection (`Connection: close`): no
/// pool hides what the server does, and bodies, methods and paths go out exactly as written. For several
/// requests on one connection, and bytes sent piece by piece, see `TestConnection`.
public enum HTTPTestClient {
    public static func request(
        port: Int,
        _ method: String,
        _ path: String,
        headers: [(String, String)] = [],
        body: String? = nil,
        timeout: Duration = .seconds(60)
    ) throws -> TestResponse {
        let socket = try open(port: port, timeout: timeout)
        defer { close(socket) }
        try send(socket, requestBytes(method, path, headers: headers, body: body.map { Array($0.utf8) }))
        return try readResponse(socket)
    }

    public static func requestBytes(
        _ method: String,
        _ path: String,
        headers: [(String, String)],
        body: [UInt8]?
    ) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + (body ?? [])
    }

    /// A socket connected to 127.0.0.1:`port` (the caller closes it); every read gives up after `timeout`,
    /// so that a test fails rather than hangs.
    public static func open(port: Int, timeout: Duration) throws -> Int32 {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        do {
            try connectLoopback(socket, port: port)
        } catch {
            close(socket)
            throw error
        }
        return socket
    }

    public static func send(_ socket: Int32, _ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes {
                Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard count > 0 else { throw TestFailure("send: \(String(cString: strerror(errno)))") }
            sent += count
        }
    }

    /// Reads until the server closes the connection, then parses status, headers and body.
    public static func readResponse(_ socket: Int32) throws -> TestResponse {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET && !data.isEmpty { break }
                throw TestFailure("recv: \(String(cString: strerror(errno))) after \(data.count) bytes")
            }
            data += chunk[0..<count]
        }
        guard let end = headEnd(in: data) else {
            throw TestFailure("no complete response head in \(data.count) bytes")
        }
        let (status, headers) = try parseHead(data[..<end])
        return TestResponse(status: status, headers: headers, body: Array(data[(end + 4)...]))
    }

    /// Where the response head's blank line (CR LF CR LF) starts, if it has arrived.
    static func headEnd(in data: [UInt8]) -> Int? {
        guard data.count >= 4 else { return nil }
        return (0...(data.count - 4)).first { data[$0..<$0 + 4].elementsEqual([13, 10, 13, 10]) }
    }

    /// The status and the headers (names lowercased, in order) of a response head.
    static func parseHead(_ bytes: ArraySlice<UInt8>) throws -> (Int, [(String, String)]) {
        let head = String(decoding: bytes, as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw TestFailure("bad status line in \(head)")
        }
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (
                line[..<colon].lowercased(),
                line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            )
        }
        return (status, headers)
    }
}

/// A plain `GET` of 127.0.0.1:`port``path`: the status and the body as text. The timeout is generous: a
/// server on Swift's pool answers late when the machine is loaded (and a test blocks a thread of that pool).
public func httpGet(port: Int, path: String, timeout: Duration = .seconds(30)) throws -> (status: Int, body: String) {
    let response = try HTTPTestClient.request(port: port, "GET", path, timeout: timeout)
    return (response.status, response.text)
}

/// One client connection kept open over several requests: full control over how bytes reach the server
/// (chunks, `Expect`, keep-alive). Responses are framed by `Content-Length` or by the connection closing.
public final class TestConnection {
    private let socket: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    /// Connects to 127.0.0.1:`port`; every read gives up after `timeout` (so a test fails, not hangs).
    public init(port: Int, timeout: Duration = .seconds(10)) throws {
        socket = try HTTPTestClient.open(port: port, timeout: timeout)
    }

    deinit {
        close()
    }

    public func close() {
        if !closed {
            closed = true
            Glibc.close(socket)
        }
    }

    public func send(_ bytes: [UInt8]) throws {
        try HTTPTestClient.send(socket, bytes)
    }

    public func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    /// Sends a request head; `Content-Length` is added for a body unless `headers` has a framing header.
    public func sendHead(
        method: String,
        target: String,
        headers: [(String, String)] = [],
        bodyLength: Int? = nil
    ) throws {
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

    public func request(
        _ method: String,
        _ target: String,
        headers: [(String, String)] = [],
        body: [UInt8]? = nil
    ) throws -> TestResponse {
        try sendHead(method: method, target: target, headers: headers, bodyLength: body?.count)
        if let body {
            try send(body)
        }
        return try readResponse()
    }

    /// Reads one final response (interim 1xx responses are skipped).
    public func readResponse() throws -> TestResponse {
        while true {
            let end = try fill { HTTPTestClient.headEnd(in: $0) }
            let (status, headers) = try HTTPTestClient.parseHead(buffer[..<end])
            buffer.removeFirst(end + 4)
            if (100..<200).contains(status) {
                continue
            }
            var response = TestResponse(status: status, headers: headers, body: [])
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
                throw TestFailure("connection closed after \(buffer.count) bytes")
            }
        }
    }

    private func receive() throws -> Int {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else {
            throw TestFailure("recv: \(String(cString: strerror(errno)))")
        }
        buffer.append(contentsOf: chunk[..<count])
        return count
    }
}
