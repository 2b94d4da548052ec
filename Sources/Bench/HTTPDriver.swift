import Contracts
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 keep-alive client over one blocking-write, poll-read POSIX socket: one request at a
/// time (no pipelining), `Content-Length` or chunked bodies. Enough for the facade; nothing more.
final class HTTPClientConnection {
    let host: String
    let port: Int
    private(set) var fd: Int32 = -1
    private var buffer: [UInt8] = []

    init(host: String, port: Int) throws {
        self.host = host
        self.port = port
        try open()
    }

    deinit { close() }

    func open() throws {
        close()
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
            throw BenchError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        let socket = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard socket >= 0 else { throw BenchError("socket: errno \(errno)") }
        guard connect(socket, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let code = errno
            Glibc.close(socket)
            throw BenchError("connect to \(host):\(port): \(String(cString: strerror(code)))")
        }
        var one: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        fd = socket
        buffer.removeAll(keepingCapacity: true)
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func send(method: String, path: String, body: [UInt8], headers: [(String, String)] = []) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" {
            head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        var bytes = Array(head.utf8)
        bytes += body
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw BenchError("send: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    /// Reads what the socket has (call when poll says readable); a complete response, or nil for more.
    func receive() throws -> (status: Int, body: [UInt8], close: Bool)? {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count < 0 {
            if errno == EINTR || errno == EAGAIN { return nil }
            throw BenchError("recv: \(String(cString: strerror(errno)))")
        }
        if count == 0 { throw BenchError("connection closed by the server") }
        buffer += chunk[0..<count]
        return try parse()
    }

    private func parse() throws -> (status: Int, body: [UInt8], close: Bool)? {
        guard let headerEnd = find([13, 10, 13, 10], in: buffer, from: 0) else { return nil }
        guard let head = String(bytes: buffer[0..<headerEnd], encoding: .utf8) else { throw BenchError("bad head") }
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw BenchError("bad status line") }
        var contentLength: Int?
        var chunked = false
        var close = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces).lowercased()
            switch name {
            case "content-length": contentLength = Int(value)
            case "transfer-encoding": chunked = value.contains("chunked")
            case "connection": close = value == "close"
            default: break
            }
        }
        let bodyStart = headerEnd + 4
        if chunked {
            var body: [UInt8] = []
            var position = bodyStart
            while true {
                guard let lineEnd = find([13, 10], in: buffer, from: position) else { return nil }
                let sizeText = String(decoding: buffer[position..<lineEnd], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else {
                    throw BenchError("bad chunk")
                }
                let dataStart = lineEnd + 2
                if size == 0 {
                    guard let end = find([13, 10, 13, 10], in: buffer, from: lineEnd) else { return nil }
                    buffer.removeFirst(end + 4)
                    return (status, body, close)
                }
                guard buffer.count >= dataStart + size + 2 else { return nil }
                body += buffer[dataStart..<dataStart + size]
                position = dataStart + size + 2
            }
        }
        let length = contentLength ?? 0
        guard buffer.count >= bodyStart + length else { return nil }
        let body = Array(buffer[bodyStart..<bodyStart + length])
        buffer.removeFirst(bodyStart + length)
        return (status, body, close)
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var index = start
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0] {
                var match = true
                for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return index }
            }
            index += 1
        }
        return nil
    }
}

/// The REST route of a request (INTERFACE.md's facade table).
func httpRoute(_ request: BenchRequest, encoder: JSONEncoder) throws -> (method: String, path: String, body: [UInt8]) {
    switch request {
    case .hold, .holdBest: ("POST", "/hold", try request.body(encoder: encoder))
    case .release: ("POST", "/release", try request.body(encoder: encoder))
    case .purchase: ("POST", "/purchase", try request.body(encoder: encoder))
    case .availability(let availability): ("GET", "/availability?showtimeId=\(availability.showtimeId)", [])
    case .holdGet(let get): ("GET", "/holds/\(get.holdId)", [])
    case .echo: ("GET", "/healthz", [])
    }
}

/// One driver thread for the facade: `clients` keep-alive connections, one request in flight on each,
/// waited on together with poll(2).
final class HTTPLoadDriver {
    private let index: Int
    private let host: String
    private let port: Int
    private let window: RunWindow
    private let logger: Logger
    private var clients: [VirtualClient]
    private var connections: [HTTPClientConnection?]
    private var inFlight: [(request: BenchRequest, sent: ContinuousClock.Instant)?]
    private var stats = RunStats()
    private let encoder = ContractJSON.encoder()
    private let decoder = ContractJSON.decoder()
    private let tokens: BenchTokens?
    /// Each virtual user's `Authorization` header, minted on its first request.
    private var authorization: [String: [(String, String)]] = [:]

    init(
        index: Int,
        host: String,
        port: Int,
        window: RunWindow,
        clients: [VirtualClient],
        tokens: BenchTokens? = nil,
        logger: Logger
    ) {
        self.tokens = tokens
        self.index = index
        self.host = host
        self.port = port
        self.window = window
        self.clients = clients
        self.logger = logger
        connections = Array(repeating: nil, count: clients.count)
        inFlight = Array(repeating: nil, count: clients.count)
    }

    func run() -> RunStats {
        for client in clients.indices { send(client) }
        var issuing = true
        var lastRetry = ContinuousClock.now
        var pollFDs = [pollfd](repeating: pollfd(), count: clients.count)
        while true {
            let now = ContinuousClock.now
            if issuing && now >= window.end { issuing = false }
            let busy = inFlight.indices.filter { inFlight[$0] != nil }
            if !issuing && (busy.isEmpty || now >= window.end + window.timeout) { break }
            if issuing && busy.count < clients.count && now - lastRetry >= .milliseconds(100) {
                // Users whose request could not be sent (connection refused or reset): try them again.
                lastRetry = now
                for client in clients.indices where inFlight[client] == nil { send(client) }
                continue
            }
            if busy.isEmpty {
                Thread.sleep(forTimeInterval: 0.05)
                continue
            }
            for (slot, client) in busy.enumerated() {
                pollFDs[slot] = pollfd(fd: connections[client]?.fd ?? -1, events: Int16(POLLIN), revents: 0)
            }
            let ready = poll(&pollFDs, nfds_t(busy.count), 20)
            if ready > 0 {
                for (slot, client) in busy.enumerated() where pollFDs[slot].revents != 0 {
                    receive(client, issuing: issuing)
                }
            }
            let scanNow = ContinuousClock.now
            for client in busy {
                if let entry = inFlight[client], scanNow - entry.sent >= window.timeout {
                    // No answer in time: this connection's next answer would be the stale one; start afresh.
                    connections[client]?.close()
                    connections[client] = nil
                    finish(client, entry, BenchReply(outcome: .timeout), issuing: issuing)
                }
            }
        }
        for client in clients.indices {
            if let entry = inFlight[client] {
                stats.unanswered += 1
                record(entry, BenchReply(outcome: .timeout), at: .now)
            }
            connections[client]?.close()
        }
        return stats
    }

    private func receive(_ client: Int, issuing: Bool) {
        guard let connection = connections[client], let entry = inFlight[client] else { return }
        do {
            guard let response = try connection.receive() else { return }
            if response.close {
                connection.close()
                connections[client] = nil
            }
            let reply = BenchReply.decodeHTTP(
                status: response.status,
                body: response.body,
                operation: entry.request.operation,
                decoder: decoder
            )
            finish(client, entry, reply, issuing: issuing)
        } catch {
            stats.transportErrors.append("\(error)")
            connection.close()
            connections[client] = nil
            finish(client, entry, BenchReply(outcome: .error, errorCode: "TRANSPORT"), issuing: issuing)
        }
    }

    private func finish(
        _ client: Int,
        _ entry: (request: BenchRequest, sent: ContinuousClock.Instant),
        _ reply: BenchReply,
        issuing: Bool
    ) {
        inFlight[client] = nil
        let now = ContinuousClock.now
        record(entry, reply, at: now)
        if reply.outcome == .timeout || reply.errorCode == "TRANSPORT" {
            clients[client].reset()
        } else {
            clients[client].received(reply, for: entry.request)
        }
        if issuing && now < window.end { send(client) }
    }

    private func record(
        _ entry: (request: BenchRequest, sent: ContinuousClock.Instant),
        _ reply: BenchReply,
        at now: ContinuousClock.Instant
    ) {
        if let request = entry.request.holdRequester, reply.outcome == .won, let hold = reply.hold {
            stats.wonHolds.append(
                WonHold(
                    holdID: hold.holdId,
                    showtimeID: request.showtimeId,
                    seatIDs: hold.seatIds,
                    userID: request.userId
                )
            )
        }
        guard entry.sent >= window.measureStart && entry.sent < window.end else { return }
        stats.record(entry.request.operation, reply, microseconds: microseconds(from: entry.sent, to: now))
    }

    private func send(_ client: Int) {
        let request = clients[client].nextRequest()
        do {
            if connections[client] == nil { connections[client] = try HTTPClientConnection(host: host, port: port) }
            let (method, path, body) = try httpRoute(request, encoder: encoder)
            let headers = try authorizationHeaders(clients[client].userID)
            inFlight[client] = (request, .now)
            try connections[client]!.send(method: method, path: path, body: body, headers: headers)
        } catch {
            stats.transportErrors.append("\(error)")
            connections[client]?.close()
            connections[client] = nil
            inFlight[client] = nil
            clients[client].reset()
        }
    }
}

extension HTTPLoadDriver {
    fileprivate func authorizationHeaders(_ user: String) throws -> [(String, String)] {
        guard let tokens else { return [] }
        if let headers = authorization[user] { return headers }
        var headers = [("Authorization", "Bearer \(try tokens.mint(user))")]
        if tokens.forwardedFor { headers.append(("X-Forwarded-For", forwardedAddress(user))) }
        authorization[user] = headers
        return headers
    }
}

/// The bearer tokens of an HTTP run: `mint` makes a virtual user's token (called once per user, on its
/// driver thread; it must allow purchase, which the mix does for the user's own holds), `admin` may
/// change seat maps (provisioning over HTTP).
public struct BenchTokens: Sendable {
    public var mint: @Sendable (String) throws -> String
    public var admin: String
    /// Each virtual user's requests carry `X-Forwarded-For` with an address of its own (10.x.y.z from a
    /// hash of its user id): a crowd behind a trusted proxy (`TRUSTED_PROXIES`), not one client address.
    public var forwardedFor = false

    public init(admin: String, mint: @escaping @Sendable (String) throws -> String) {
        self.admin = admin
        self.mint = mint
    }
}

/// A virtual user's client address for `X-Forwarded-For`: 10.x.y.z from the FNV-1a hash of its user id
/// (stable across runs; distinct for the few hundred users of a run but for a rare collision).
func forwardedAddress(_ user: String) -> String {
    var hash: UInt32 = 2_166_136_261
    for byte in user.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
    return "10.\((hash >> 16) & 255).\((hash >> 8) & 255).\(hash & 255)"
}

/// Polls `GET /readyz` until it answers 200 (the facade is connected to the broker and a core answers
/// ping); throws with the last answer when that does not happen within `limit`.
func awaitReady(host: String, port: Int, within limit: Duration = .seconds(60)) throws {
    let deadline = ContinuousClock.now + limit
    var last = "no answer"
    while true {
        do {
            let (status, body) = try httpCall(host: host, port: port, method: "GET", path: "/readyz", body: [])
            if status == 200 { return }
            last = "\(status) \(String(decoding: body, as: UTF8.self))"
        } catch {
            last = "\(error)"
        }
        guard ContinuousClock.now < deadline else {
            throw BenchError("http://\(host):\(port)/readyz did not answer 200 within \(limit): \(last)")
        }
        Thread.sleep(forTimeInterval: 0.1)
    }
}

/// One blocking REST call (provisioning over HTTP).
func httpCall(
    host: String,
    port: Int,
    method: String,
    path: String,
    body: [UInt8],
    headers: [(String, String)] = []
) throws -> (Int, [UInt8]) {
    let connection = try HTTPClientConnection(host: host, port: port)
    defer { connection.close() }
    try connection.send(method: method, path: path, body: body, headers: headers)
    var descriptor = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
        guard poll(&descriptor, 1, 100) > 0 else { continue }
        if let response = try connection.receive() { return (response.status, response.body) }
    }
    throw BenchError("no answer from \(method) \(path) within 30 s")
}
