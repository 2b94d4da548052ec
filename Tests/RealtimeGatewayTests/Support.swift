import AMQPClient
import Contracts
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import RealtimeGateway
import ServiceLifecycle
import Synchronization
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Broker fixtures: scratch vhosts (TestSupport), and connection loss

/// Closes, from the broker's side, every connection of `vhost` whose name starts with `namePrefix`: what
/// the gateway sees when the broker restarts, without restarting the shared broker. How many it closed.
func closeBrokerConnections(vhost: String, namePrefix: String) async throws -> Int {
    try await blocking {
        // The connection_name client property shows only inside client_properties.
        let pids = try RabbitMQ.connections(vhost: vhost, clientPropertiesContaining: "\"\(namePrefix)")
        try RabbitMQ.closeConnections(pids, reason: "test: broker-side connection loss")
        return pids.count
    }
}

let quietLogger = makeTestLogger("realtime-gateway-tests", level: .warning, variable: "GATEWAY_TEST_LOG")

// MARK: - Broker-side helpers: an event publisher and a stand-in for the core's availability RPC

/// Publishes events to `inventory.events` of the test's vhost. Used from one task at a time.
final class EventPublisher: @unchecked Sendable {
    // @unchecked: the connection is used only under `lock`.
    private let lock = NSLock()
    private let connection: AMQPConnection

    init(vhost: String) throws {
        var configuration = try AMQPConfiguration(url: RabbitMQ.url(vhost: vhost))
        configuration.heartbeat = .zero  // idle between publishes; nothing reads heartbeats here
        configuration.connectionName = "gateway-tests publisher"
        connection = try AMQPConnection(configuration: configuration, logger: quietLogger)
        try connection.declareExchange(EventType.exchange, type: .topic, durable: true)
    }

    func publish(_ event: InventoryEvent) throws {
        try publish(raw: ContractJSON.encode(event), routingKey: event.type.rawValue, messageID: event.eventId)
    }

    func publish(raw body: [UInt8], routingKey: String, messageID: String? = nil) throws {
        lock.lock()
        defer { lock.unlock() }
        try connection.publish(
            exchange: EventType.exchange,
            routingKey: routingKey,
            body: body,
            properties: AMQPProperties(contentType: "application/json", messageID: messageID, persistent: true)
        )
    }

    deinit { connection.close() }
}

/// Answers `availability.request` in the test's vhost from a seat map the test controls, on its own thread.
final class FakeCore: Sendable {
    private let seatMaps = Mutex<[String: [String]]>([:])
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    let requests = Atomic<Int>(0)

    init(vhost: String, seatMaps: [String: [String]]) throws {
        self.seatMaps.withLock { $0 = seatMaps }
        var configuration = try AMQPConfiguration(url: RabbitMQ.url(vhost: vhost))
        configuration.connectionName = "gateway-tests fake-core"
        let connection = try AMQPConnection(configuration: configuration, logger: quietLogger)
        try connection.declareExchange(RPCOperation.exchange, type: .direct, durable: true)
        let queue = try connection.declareQueue(RPCOperation.availability.queueName, durable: false)
        try connection.bindQueue(
            queue,
            exchange: RPCOperation.exchange,
            routingKey: RPCOperation.availability.routingKey
        )
        try connection.consume(queue: queue, noAck: true)
        let box = UncheckedBox(connection)
        let thread = Thread { [self] in
            let connection = box.value
            while !stopped.load(ordering: .relaxed) {
                guard case .delivery(let message)? = try? connection.nextEvent(timeout: .milliseconds(100)) else {
                    if !connection.isOpen { break }
                    continue
                }
                requests.add(1, ordering: .relaxed)
                guard let request = try? ContractJSON.decode(AvailabilityRequest.self, from: message.body),
                    let replyTo = message.properties.replyTo
                else { continue }
                let reply: RPCReply<Availability>
                if let seats = self.seatMaps.withLock({ $0[request.showtimeId] }) {
                    reply = .ok(
                        Availability(
                            showtimeId: request.showtimeId,
                            availability: seats.map { SeatAvailability(seatId: $0, state: .available) },
                            summary: AvailabilitySummary(available: seats.count, held: 0, purchased: 0)
                        )
                    )
                } else {
                    reply = .error(ErrorBody(code: .showtimeNotFound, message: "Showtime not found"))
                }
                _ = try? connection.publish(
                    exchange: "",
                    routingKey: replyTo,
                    body: ContractJSON.encode(reply),
                    properties: AMQPProperties(
                        contentType: "application/json",
                        correlationID: message.properties.correlationID
                    )
                )
            }
            connection.close()
            finished.signal()
        }
        thread.start()
    }

    func stop() async {
        stopped.store(true, ordering: .relaxed)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread { [finished] in
                finished.wait()
                continuation.resume()
            }.start()
        }
    }
}

// MARK: - The gateway under test

final class RunningGateway: Sendable {
    let gateway: RealtimeGateway
    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(gateway: RealtimeGateway, port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.gateway = gateway
        self.port = port
        self.group = group
        self.task = task
    }

    static func start(
        vhost: String,
        configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) async throws
        -> RunningGateway
    {
        var configuration = GatewayConfiguration()
        configuration.port = 0
        configuration.host = "127.0.0.1"
        configuration.rabbitMQURL = RabbitMQ.url(vhost: vhost)
        configuration.rpcTimeout = .seconds(2)
        configuration.connectionName = "realtime-gateway"
        configure(&configuration)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let gateway = try RealtimeGateway(configuration: configuration, logger: quietLogger) { port in
            portContinuation.yield(port)
        }
        let group = ServiceGroup(
            configuration: .init(services: [gateway], gracefulShutdownSignals: [], logger: quietLogger)
        )
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestFailure("the gateway did not start") }
        let running = RunningGateway(gateway: gateway, port: port, group: group, task: task)
        // Ready once the event queue is bound: earlier events would not reach it.
        try await running.waitUntil("broker connected") { gateway.metrics.snapshot().brokerConnected }
        return running
    }

    var url: String { "ws://127.0.0.1:\(port)/" }

    func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        try await eventually(what, timeout: timeout, condition)
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// A gateway (and a stand-in core answering snapshots from `seatMaps`) in a fresh vhost for `body`;
/// all stopped and removed afterwards, whether `body` succeeds or not.
func withGateway<R>(
    seatMaps: [String: [String]],
    configure: (inout GatewayConfiguration) -> Void = { _ in },
    _ body: (RunningGateway, String) async throws -> R
) async throws -> R {
    try await withScratchVhost(prefix: "test-gw") { scratch in
        let vhost = scratch.name
        let core = try FakeCore(vhost: vhost, seatMaps: seatMaps)
        let gateway: RunningGateway
        do {
            gateway = try await RunningGateway.start(vhost: vhost, configure: configure)
        } catch {
            await core.stop()
            throw error
        }
        do {
            let result = try await body(gateway, vhost)
            try await gateway.stop()
            await core.stop()
            return result
        } catch {
            try? await gateway.stop()
            await core.stop()
            throw error
        }
    }
}

// MARK: - A WebSocket client (hummingbird-websocket's WSClient) that records what it gets

struct Received: Sendable {
    var text: String
    var type: String
    var showtimeId: String?
    var eventId: String?
    var at: ContinuousClock.Instant
}

final class TestClient: Sendable {
    /// What the connection's task records; a class so that the task can hold it.
    private final class State: Sendable {
        let received = Mutex<[Received]>([])
        let connected = Atomic<Bool>(false)
        let ended = Atomic<Bool>(false)
    }

    let name: String
    private let state = State()
    private let outgoing: AsyncStream<String>.Continuation
    private let task: Task<Void, Never>

    init(name: String, url: String) {
        self.name = name
        let (stream, outgoing) = AsyncStream.makeStream(of: String.self)
        self.outgoing = outgoing
        let state = self.state
        task = Task {
            do {
                try await WebSocketClient.connect(url: url, logger: quietLogger) { inbound, outbound, _ in
                    state.connected.store(true, ordering: .sequentiallyConsistent)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await text in stream { try await outbound.write(.text(text)) }
                        }
                        for try await message in inbound.messages(maxSize: 1 << 22) {
                            let now = ContinuousClock.now
                            guard case .text(let text) = message else { continue }
                            let object =
                                (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
                            let item = Received(
                                text: text,
                                type: object["type"] as? String ?? "?",
                                showtimeId: object["showtimeId"] as? String,
                                eventId: object["eventId"] as? String,
                                at: now
                            )
                            state.received.withLock { $0.append(item) }
                        }
                        group.cancelAll()
                    }
                }
            } catch {}
            state.ended.store(true, ordering: .sequentiallyConsistent)
        }
    }

    static func connect(_ name: String, url: String) async throws -> TestClient {
        let client = TestClient(name: name, url: url)
        try await eventually("\(name) connected") {
            client.state.connected.load(ordering: .sequentiallyConsistent)
                || client.state.ended.load(ordering: .sequentiallyConsistent)
        }
        guard client.state.connected.load(ordering: .sequentiallyConsistent) else {
            throw TestFailure("\(name) could not connect")
        }
        return client
    }

    func send(_ text: String) { outgoing.yield(text) }

    var messages: [Received] { state.received.withLock { $0 } }
    var events: [Received] { messages.filter { $0.eventId != nil } }
    var isClosed: Bool { state.ended.load(ordering: .sequentiallyConsistent) }

    /// The first message (from `index` on) that `matches`, waiting up to `timeout`.
    @discardableResult
    func next(
        after index: Int = 0,
        timeout: Duration = .seconds(10),
        _ what: String,
        where matches: (Received) -> Bool
    ) async throws -> Received {
        var found: Received?
        try await eventually("\(name): \(what)", timeout: timeout) {
            found = messages.dropFirst(index).first(where: matches)
            return found != nil
        }
        return found!
    }

    func close() async {
        outgoing.finish()
        task.cancel()
        await task.value
    }
}

// MARK: - Raw sockets: a client that never reads

/// Connects with a tiny receive buffer, upgrades to WebSocket following `showtimeId`, then never reads
/// again: the kind of client whose socket fills and stops taking data.
final class NeverReadingClient: Sendable {
    let fd: Int32

    init(port: Int, showtimeId: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var small: Int32 = 2048
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        try connectLoopback(fd, port: port)
        let request =
            "GET /?showtimeId=\(showtimeId) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\n"
            + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        try HTTPTestClient.send(fd, Array(request.utf8))
        // Read the 101 response headers, a byte at a time so no WebSocket frame is consumed after them.
        var headers: [UInt8] = []
        var byte: UInt8 = 0
        while !headers.ends(with: Array("\r\n\r\n".utf8)) {
            guard read(fd, &byte, 1) == 1 else { throw TestFailure("no upgrade response") }
            headers.append(byte)
        }
        guard String(decoding: headers, as: UTF8.self).hasPrefix("HTTP/1.1 101") else {
            throw TestFailure("upgrade refused: \(String(decoding: headers, as: UTF8.self))")
        }
    }

    func close() { _ = Glibc.close(fd) }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool {
        count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix
    }
}

// MARK: - Events

func makeEvent(
    _ type: EventType,
    showtimeId: String,
    holdId: String = "h_\(UUID().uuidString.prefix(8))",
    seats: [String] = ["A1", "A2"],
    eventId: String = UUID().uuidString
) -> InventoryEvent {
    InventoryEvent(
        eventId: eventId,
        type: type,
        occurredAt: Date(),
        showtimeId: showtimeId,
        holdId: holdId,
        userId: "u_1",
        seatIds: seats,
        expiresAt: type == .holdCreated ? Date().addingTimeInterval(300) : nil,
        orderId: type == .seatsPurchased ? "o_1" : nil
    )
}

/// Milliseconds, with one decimal, for the report.
func ms(_ duration: Duration) -> String {
    let value = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    return String(format: "%.1f", value)
}

func percentile(_ values: [Duration], _ p: Double) -> Duration {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .zero }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
}
