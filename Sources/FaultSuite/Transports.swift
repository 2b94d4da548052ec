import AMQPClient
import Contracts
import Foundation
import InventoryRPCClient
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// How one request ended, as a client sees it.
public enum CallOutcome: Sendable {
    /// A success reply: the hold as the service answered it.
    case hold(Hold)
    /// An error reply with its code.
    case error(String)
    /// No reply within the timeout.
    case timeout
    /// The connection failed (refused, reset, closed by a restart).
    case transport(String)
    /// The client dropped its connection right after sending, on purpose.
    case disconnected

    var result: String {
        switch self {
        case .hold: "ok"
        case .error: "error"
        case .timeout: "timeout"
        case .transport: "transport"
        case .disconnected: "disconnected"
        }
    }
}

/// One client's connection to the service: blocking, one request at a time, reconnecting on demand.
protocol ServiceTransport: AnyObject {
    var name: String { get }
    func call(_ operation: RPCOperation, body: [UInt8], timeout: Duration, disconnectAfterSend: Bool) -> CallOutcome
    func close()
}

/// AMQP RPC through `inventory.rpc` with the shared RPC channel (direct reply-to, both deadline forms,
/// `mandatory`), reconnecting on demand: a call after a lost connection opens a new one.
final class AMQPTransport: ServiceTransport {
    let name = "amqp"
    private let channel: RPCChannel
    private let decoder = ContractJSON.decoder()

    init(url: String, clientName: String, logger: Logger) throws {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectTimeout = .seconds(2)
        configuration.heartbeat = .seconds(10)
        configuration.connectionName = "faults-\(clientName)"
        channel = RPCChannel(configuration: .init(amqp: configuration), logger: logger)
    }

    func call(_ operation: RPCOperation, body: [UInt8], timeout: Duration, disconnectAfterSend: Bool) -> CallOutcome {
        let request = RPCRequest(operation, body: body, timeout: timeout)
        do throws(AMQPError) {
            try channel.connect()
            if disconnectAfterSend {
                var failedAtOnce: RPCFailure?
                channel.send(request) { if case .failure(let failure) = $0 { failedAtOnce = failure } }
                // A clean close after the publish: the broker routes the request, nobody waits for its reply.
                channel.close()
                if let failedAtOnce, failedAtOnce != .stopped { return .transport("\(failedAtOnce)") }
                return .disconnected
            }
            switch try channel.call(request) {
            case .success(let reply): return Self.decode(reply.body, decoder: decoder)
            case .failure(.timedOut): return .timeout
            case .failure(let failure): return .transport("\(failure)")
            }
        } catch {
            channel.close()
            return .transport("\(error)")
        }
    }

    static func decode(_ body: [UInt8], decoder: JSONDecoder) -> CallOutcome {
        do {
            switch try decoder.decode(RPCReply<Hold>.self, from: Data(body)).result {
            case .success(let hold): return .hold(hold)
            case .failure(let error): return .error(error.code.rawValue)
            }
        } catch {
            return .error("UNDECODABLE_REPLY")
        }
    }

    func close() {
        channel.close()
    }
}

/// The REST facade, one short-lived HTTP/1.1 connection per request (`Connection: close`), so a facade
/// restart costs nothing but the requests in flight.
final class HTTPTransport: ServiceTransport {
    let name = "http"
    private let host: String
    private let port: Int
    private let decoder = ContractJSON.decoder()

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    func call(_ operation: RPCOperation, body: [UInt8], timeout: Duration, disconnectAfterSend: Bool) -> CallOutcome {
        let path: String
        switch operation {
        case .hold: path = "/hold"
        case .release: path = "/release"
        case .purchase: path = "/purchase"
        default: return .error("UNSUPPORTED")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .transport("socket: errno \(errno)") }
        defer { Glibc.close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return .transport("connect: \(String(cString: strerror(errno)))") }
        let head =
            "POST \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let request = Array(head.utf8) + body
        var offset = 0
        while offset < request.count {
            let written = request.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                return .transport("send: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
        if disconnectAfterSend { return .disconnected }

        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return .timeout }
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, min(left.components.seconds * 1000 + 1, 1000)))
            let ready = poll(&pollFD, 1, ms)
            if ready < 0 {
                if errno == EINTR { continue }
                return .transport("poll: \(String(cString: strerror(errno)))")
            }
            if ready == 0 { continue }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .transport("recv: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            response += chunk[0..<count]
            if let parsed = Self.parse(response) { return decode(status: parsed.status, body: parsed.body) }
        }
        guard let parsed = Self.parse(response, atEOF: true) else {
            return .transport("connection closed before a complete response (\(response.count) bytes)")
        }
        return decode(status: parsed.status, body: parsed.body)
    }

    /// A complete response (headers and a `Content-Length` body, or everything up to EOF), or nil.
    static func parse(_ bytes: [UInt8], atEOF: Bool = false) -> (status: Int, body: [UInt8])? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 12,
            let end = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == separator })
        else { return nil }
        let head = String(decoding: bytes[0..<end], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first else { return nil }
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        var length: Int?
        for line in lines.dropFirst() {
            let pair = line.split(separator: ":", maxSplits: 1)
            if pair.count == 2, pair[0].lowercased() == "content-length" {
                length = Int(pair[1].trimmingCharacters(in: .whitespaces))
            }
        }
        let body = Array(bytes[(end + 4)...])
        if let length {
            guard body.count >= length else { return nil }
            return (status, Array(body.prefix(length)))
        }
        return atEOF ? (status, body) : nil
    }

    private func decode(status: Int, body: [UInt8]) -> CallOutcome {
        if (200..<300).contains(status) {
            guard let hold = try? decoder.decode(Hold.self, from: Data(body)) else {
                return .error("UNDECODABLE_REPLY")
            }
            return .hold(hold)
        }
        guard let error = try? decoder.decode(RESTErrorBody.self, from: Data(body)) else {
            return .error("HTTP_\(status)")
        }
        return .error(error.error.code.rawValue)
    }

    func close() {}
}
