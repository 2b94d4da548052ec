import AMQPClient
import Contracts
import Foundation
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

/// AMQP RPC through `inventory.rpc`, replies by direct reply-to, both deadline forms set as INTERFACE.md asks.
final class AMQPTransport: ServiceTransport {
    let name = "amqp"
    private let configuration: AMQPConfiguration
    private let logger: Logger
    private var connection: AMQPConnection?
    private var nextID = 0
    private let decoder = ContractJSON.decoder()
    private let clientName: String
    /// The `x-deadline` of the last request sent (Unix epoch ms): the history records it per attempt.
    private(set) var lastDeadlineMs: Int64?

    init(url: String, clientName: String, logger: Logger) throws {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectTimeout = .seconds(2)
        configuration.heartbeat = .seconds(10)
        self.configuration = configuration
        self.clientName = clientName
        self.logger = logger
    }

    private func connected() throws(AMQPError) -> AMQPConnection {
        if let connection, connection.isOpen { return connection }
        connection?.close()
        connection = nil
        var configuration = self.configuration
        configuration.connectionName = "faults-\(clientName)"
        let opened = try AMQPConnection(configuration: configuration, logger: logger)
        do {
            try opened.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
        } catch {
            opened.close()
            throw error
        }
        connection = opened
        return opened
    }

    func call(_ operation: RPCOperation, body: [UInt8], timeout: Duration, disconnectAfterSend: Bool) -> CallOutcome {
        nextID += 1
        let correlationID = "\(clientName)-\(nextID)"
        let timeoutMs = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        lastDeadlineMs = nil
        do {
            let connection = try connected()
            let deadlineMs = epochMilliseconds() + timeoutMs
            lastDeadlineMs = deadlineMs
            let properties = AMQPProperties(
                contentType: "application/json",
                correlationID: correlationID,
                replyTo: "amq.rabbitmq.reply-to",
                expiration: String(timeoutMs),
                headers: [ContractHeaders.deadline: .int(deadlineMs)]
            )
            try connection.publish(
                exchange: RPCOperation.exchange,
                routingKey: operation.routingKey,
                body: body,
                properties: properties
            )
            if disconnectAfterSend {
                connection.close()
                self.connection = nil
                return .disconnected
            }
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                guard let event = try connection.nextEvent(timeout: .milliseconds(100)),
                    case .delivery(let message) = event, message.properties.correlationID == correlationID
                else { continue }
                return Self.decode(message.body, decoder: decoder)
            }
            return .timeout
        } catch {
            connection?.close()
            connection = nil
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
        connection?.close()
        connection = nil
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
