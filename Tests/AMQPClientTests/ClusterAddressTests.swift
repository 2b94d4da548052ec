import Foundation
import TestSupport
import Testing

@testable import AMQPClient

#if canImport(Glibc)
import Glibc
#endif

@Suite("Several broker addresses in one URL (decision 0025)") struct ClusterAddressParsingTests {
    @Test("a host list shares the user, password, vhost and parameters; the first host is host and port")
    func hostList() throws {
        let configuration = try AMQPConfiguration(
            url: "amqp://core:p%2Cw@10.0.0.1:5801,10.0.0.2,[::1]:5803/shop?heartbeat=3&queue_type=quorum"
        )
        #expect(configuration.host == "10.0.0.1")
        #expect(configuration.port == 5801)
        #expect(
            configuration.otherEndpoints == [
                AMQPEndpoint(host: "10.0.0.2", port: 5672), AMQPEndpoint(host: "::1", port: 5803),
            ]
        )
        #expect(configuration.endpoints.count == 3)
        #expect(configuration.user == "core")
        #expect(configuration.password == "p,w")
        #expect(configuration.vhost == "shop")
        #expect(configuration.heartbeat == .seconds(3))
        #expect(configuration.durableQueueType == "quorum")
        #expect(configuration.description == "amqp://core:***@10.0.0.1:5801,10.0.0.2:5672,[::1]:5803/shop")
    }

    @Test("whole URLs separated by commas give the same list when they differ only in host and port")
    func urlList() throws {
        let configuration = try AMQPConfiguration(
            url: "amqp://u:p@a:5801/v,amqp://u:p@b:5802/v,amqp://u:p@c:5803/v"
        )
        #expect(configuration.endpoints.map(\.description) == ["a:5801", "b:5802", "c:5803"])
        #expect(configuration.vhost == "v")
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "amqp://u:p@a/v,amqp://other:p@b/v") }
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "amqp://u:p@a/v,amqp://u:p@b/w") }
    }

    @Test("an empty address, an address twice and an unknown queue_type are refused; one address is unchanged")
    func refusals() throws {
        for url in [
            "amqp://u:p@a:1,,b:2/", "amqp://u:p@a:1,a:1/", "amqp://u:p@a:1,b:99999/", "amqp://a?queue_type=stream",
            "amqp://u:p@a:1,/",
        ] {
            #expect(throws: AMQPError.self, "\(url)") { try AMQPConfiguration(url: url) }
        }
        // A comma in the password (not percent-encoded) still works when there is one host.
        let single = try AMQPConfiguration(url: "amqp://u:p,w@a:1/")
        #expect(single.password == "p,w")
        #expect(single.otherEndpoints.isEmpty)
        #expect(single.durableQueueType == nil)
        #expect(try AMQPConfiguration(url: "amqp://a?queue_type=classic").durableQueueType == nil)
    }
}

@Suite("Several broker addresses against the real broker") struct ClusterAddressTests {
    /// The shared broker, and a configuration listing `first` before it.
    private static func configuration(first: AMQPEndpoint, _ purpose: String) throws -> (AMQPConfiguration, Int) {
        var configuration = try Broker.configuration(purpose)
        let live = AMQPEndpoint(host: configuration.host, port: configuration.port)
        configuration.host = first.host
        configuration.port = first.port
        configuration.otherEndpoints = [live]
        return (configuration, live.port)
    }

    @Test("with a dead first address, every connection opens on the live one")
    func deadFirstAddress() throws {
        let (configuration, livePort) = try Self.configuration(
            first: AMQPEndpoint(host: "127.0.0.1", port: try freePort()),
            #function
        )
        // Two in a row: each new connection starts at the next address, so one of them starts at the dead one.
        for _ in 0..<2 {
            let connection = try AMQPConnection(configuration: configuration, logger: Broker.quietLogger)
            defer { connection.close() }
            #expect(connection.configuration.port == livePort)
            try Broker.withQueue(on: connection) { _ in }
        }
    }

    @Test("a connection whose node dies reconnects to the other address")
    func nodeDies() throws {
        let forwarder = try TCPForwarder(to: try AMQPConfiguration(url: RabbitMQ.baseURL).port)
        defer { forwarder.stop() }
        let (configuration, livePort) = try Self.configuration(
            first: AMQPEndpoint(host: "127.0.0.1", port: forwarder.port),
            #function
        )
        // Connections alternate between the addresses (other tests' lists too): soon one uses the forwarder.
        var onForwarder: AMQPConnection?
        for _ in 0..<20 where onForwarder == nil {
            let connection = try AMQPConnection(configuration: configuration, logger: Broker.quietLogger)
            if connection.configuration.port == forwarder.port { onForwarder = connection } else { connection.close() }
        }
        let lost = try #require(onForwarder)
        try Broker.withQueue(on: lost) { _ in }
        forwarder.stop()  // the node "dies": its sockets close under the client
        #expect(throws: AMQPError.self) {
            try lost.declareQueue(Broker.uniqueName("after-loss"), durable: false, exclusive: true)
            _ = try lost.nextEvent(timeout: .seconds(2))
        }
        #expect(!lost.isOpen)
        for _ in 0..<2 {
            let again = try AMQPConnection(configuration: configuration, logger: Broker.quietLogger)
            defer { again.close() }
            #expect(again.configuration.port == livePort)
            try Broker.withQueue(on: again) { _ in }
        }
    }

    @Test("queue_type=quorum makes durable shared queues quorum queues and leaves the others classic")
    func quorumQueues() throws {
        var configuration = try Broker.configuration(#function)
        configuration.durableQueueType = "quorum"
        let connection = try AMQPConnection(configuration: configuration, logger: Broker.quietLogger)
        defer { connection.close() }
        let name = Broker.uniqueName("quorum")
        try connection.declareQueue(name, durable: true)
        defer { try? Broker.connect("clean-up").deleteQueue(name) }
        // Declared again as classic, a quorum queue is a mismatch the broker refuses (406).
        let check = try Broker.connect(#function)
        defer { check.close() }
        let mismatch = #expect(throws: AMQPError.self) {
            try check.declareQueue(name, durable: true, arguments: ["x-queue-type": .string("classic")])
        }
        #expect(mismatch?.replyCode == 406)
        let same = try Broker.connect(#function)
        defer { same.close() }
        try same.declareQueue(name, durable: true, arguments: ["x-queue-type": .string("quorum")])
        // A per-channel prefetch (RPCWorker's) becomes per consumer: quorum queues refuse a global one (540).
        try connection.setPrefetch(2, perChannel: true)
        let tag = try connection.consume(queue: name)
        try connection.cancel(consumerTag: tag)
        // An exclusive reply queue cannot be a quorum queue: it stays classic.
        let exclusive = try connection.declareQueue("", durable: false, exclusive: true, autoDelete: true)
        #expect(!exclusive.isEmpty)
    }
}

/// A TCP forwarder from a port of its own to 127.0.0.1:`target`, one connection at a time, on a thread of
/// its own: `stop()` closes every socket at once, as a broker node that dies does for its clients.
private final class TCPForwarder: @unchecked Sendable {
    // @unchecked: `sockets` is guarded by `lock`; the thread owns the rest.
    let port: Int
    private let target: Int
    private let listener: Int32
    private let lock = NSLock()
    private var sockets: [Int32] = []
    private var stopped = false
    private let thread: Thread

    init(to target: Int) throws {
        self.target = target
        let port = try freePort()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard bound, listen(fd, 8) == 0 else {
            close(fd)
            throw TestFailure("forwarder: bind/listen on \(port): \(String(cString: strerror(errno)))")
        }
        self.port = port
        listener = fd
        let box = Box()
        thread = Thread { box.forwarder?.serve(fd) }
        box.forwarder = self
        thread.start()
    }

    private final class Box: @unchecked Sendable { weak var forwarder: TCPForwarder? }

    private func track(_ fd: Int32) -> Bool {
        lock.withLock {
            if stopped { return false }
            sockets.append(fd)
            return true
        }
    }

    private func serve(_ listener: Int32) {
        defer {
            // The thread closes what it opened, once nothing reads them any more.
            for fd in lock.withLock({ sockets + [listener] }) { close(fd) }
        }
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0, track(client) else { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard track(upstream), (try? connectLoopback(upstream, port: target)) != nil else { return }
            pump(client, upstream)
        }
    }

    /// Copies bytes both ways until either side closes or `stop()` shuts the sockets down.
    private func pump(_ a: Int32, _ b: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        while poll(&fds, 2, 200) >= 0 {
            if lock.withLock({ stopped }) { return }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                let count = read(entry.fd, &buffer, buffer.count)
                guard count > 0 else { return }
                let other = index == 0 ? b : a
                var sent = 0
                while sent < count {
                    let written = buffer.withUnsafeBytes { write(other, $0.baseAddress! + sent, count - sent) }
                    guard written > 0 else { return }
                    sent += written
                }
            }
        }
    }

    func stop() {
        let toClose: [Int32] = lock.withLock {
            if stopped { return [] }
            stopped = true
            return sockets + [listener]
        }
        // Shut down, not closed: the thread's accept and poll return at once, and it closes the sockets.
        for fd in toClose { shutdown(fd, Int32(SHUT_RDWR)) }
        thread.cancel()
    }
}
