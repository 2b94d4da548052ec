import Configuration
import Foundation
import ServiceSupport
import SystemPackage

/// The gateway's settings. Shared variables (`RABBITMQ_URL`, `RPC_TIMEOUT_MS`, `LOG_LEVEL`) come from
/// `ServiceConfiguration`; the gateway's own are read the same way (environment, then `.env.local`,
/// then `.env`; an empty value counts as unset; a value that does not parse names its variable).
public struct GatewayConfiguration: Sendable, Equatable {
    /// `WS_PORT` (3011): WebSockets, `/healthz`, `/readyz` and `/metrics` on one HTTP server.
    public var port: Int = 3011
    /// `WS_HOST` (0.0.0.0): the address to bind.
    public var host: String = "0.0.0.0"
    /// `RABBITMQ_URL`.
    public var rabbitMQURL: String = ServiceConfiguration.defaults.rabbitMQURL
    /// `RPC_TIMEOUT_MS`: how long a snapshot may take.
    public var rpcTimeout: Duration = .milliseconds(5_000)
    /// `WS_CLIENT_BUFFER` (256): messages queued for one client before it counts as too slow and is dropped.
    public var clientBufferSize: Int = 256
    /// `WS_MAX_SUBSCRIPTIONS` (32): showtimes one connection may follow.
    public var maxSubscriptionsPerClient: Int = 32
    /// `WS_PING_INTERVAL_SECONDS` (30): WebSocket pings; a client that has not answered one by the next
    /// is disconnected.
    public var pingInterval: Duration = .seconds(30)
    /// `WS_WRITE_TIMEOUT_SECONDS` (10): a client whose socket takes no data for this long is disconnected.
    public var writeTimeout: Duration = .seconds(10)
    /// `WS_SOCKET_SEND_BUFFER` (65536): each client socket's kernel send buffer (SO_SNDBUF), so a client
    /// that stops reading holds at most this much kernel memory, and its stall shows quickly.
    public var socketSendBuffer: Int = 65_536
    /// The origins whose pages may open a WebSocket: `CORS_ORIGIN` plus the facade's own origin
    /// (`WS_FACADE_ORIGIN`, by default `http://localhost:PORT,http://127.0.0.1:PORT`); `*` allows any.
    /// An upgrade without `Origin` (not a browser) is let through (decision 0017).
    public var allowedOrigins: [String] =
        ServiceConfiguration.defaults.corsOrigins + Self.facadeOrigins(port: ServiceConfiguration.defaults.port)
    /// `WS_MAX_CONNECTIONS` (10000): TCP connections held at once; more are answered 503 and closed.
    public var maxConnections: Int = 10_000
    /// `WS_MAX_CONNECTIONS_PER_ADDRESS` (256): TCP connections held at once from one client IP address.
    public var maxConnectionsPerAddress: Int = 256
    /// `WS_HANDSHAKE_TIMEOUT_SECONDS` (10): how long a connection may take to send its request head
    /// (and how long an HTTP keep-alive connection may sit idle).
    public var handshakeTimeout: Duration = .seconds(10)
    /// `WS_SNAPSHOT_REUSE_MS` (1000): how long one showtime's snapshot is handed to new subscriptions
    /// after it arrived (0: shared only while on its way).
    public var snapshotReuse: Duration = .milliseconds(1_000)
    /// `WS_MAX_PENDING_SNAPSHOTS` (256): snapshot requests on their way to the core at once.
    public var maxPendingSnapshots: Int = 256
    /// `WS_MAX_MESSAGES_PER_SECOND` (20): messages one client may send a second, in bursts of twice that
    /// or of twice `WS_MAX_SUBSCRIPTIONS`, whichever is more; a client over it is disconnected (1008).
    public var maxMessagesPerSecond: Int = 20
    /// Event ids remembered for de-duplication.
    public var deduplicationCapacity: Int = 65_536
    /// The AMQP connections' name in the broker's tools (` events` / ` rpc` appended).
    public var connectionName: String = "realtime-gateway"

    public init() {}

    /// The burst of ``maxMessagesPerSecond``: room for subscribing to every showtime allowed at once.
    public var messageBurst: Int { max(2 * maxMessagesPerSecond, 2 * maxSubscriptionsPerClient) }

    /// The facade's own origin when `WS_FACADE_ORIGIN` is not set: its `PORT` on this host's names.
    public static func facadeOrigins(port: Int) -> [String] {
        ["http://localhost:\(port)", "http://127.0.0.1:\(port)"]
    }

    /// The configuration of the process: `service` for the shared variables, plus the gateway's own.
    public static func load(
        service: ServiceConfiguration,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String = FileManager.default.currentDirectoryPath
    ) async throws(ConfigurationError) -> GatewayConfiguration {
        var readers: [(name: String, reader: ConfigReader)] = [
            ("environment", ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
        ]
        for file in ServiceConfiguration.environmentFiles {
            let path = FilePath(directory).appending(file)
            do {
                let provider = try await EnvironmentVariablesProvider(environmentFilePath: path, allowMissing: true)
                readers.append((file, ConfigReader(provider: provider)))
            } catch {
                throw ConfigurationError(variable: file, source: path.string, message: "cannot read the file: \(error)")
            }
        }
        func lookup(_ name: String) -> (value: String, source: String)? {
            for (source, reader) in readers {
                if let raw = reader.string(forKey: ConfigKey([name])) {
                    var value = raw.trimmingCharacters(in: .whitespaces)
                    if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                        value = String(value.dropFirst().dropLast())
                    }
                    if !value.isEmpty { return (value, source) }
                }
            }
            return nil
        }
        func integer(_ name: String, _ range: ClosedRange<Int>, _ fallback: Int) throws(ConfigurationError) -> Int {
            guard let (raw, source) = lookup(name) else { return fallback }
            guard let value = Int(raw), range.contains(value) else {
                throw ConfigurationError(
                    variable: name,
                    source: source,
                    message: "expected a whole number from \(range.lowerBound) to \(range.upperBound), got '\(raw)'"
                )
            }
            return value
        }
        var configuration = GatewayConfiguration()
        configuration.rabbitMQURL = service.rabbitMQURL
        configuration.rpcTimeout = service.rpcTimeout
        configuration.port = try integer("WS_PORT", 0...65_535, configuration.port)
        if let (host, _) = lookup("WS_HOST") { configuration.host = host }
        configuration.clientBufferSize = try integer("WS_CLIENT_BUFFER", 1...1_000_000, configuration.clientBufferSize)
        configuration.maxSubscriptionsPerClient = try integer(
            "WS_MAX_SUBSCRIPTIONS",
            1...10_000,
            configuration.maxSubscriptionsPerClient
        )
        configuration.socketSendBuffer = try integer(
            "WS_SOCKET_SEND_BUFFER",
            4_096...16_777_216,
            configuration.socketSendBuffer
        )
        configuration.pingInterval = .seconds(try integer("WS_PING_INTERVAL_SECONDS", 1...3_600, 30))
        configuration.maxConnections = try integer("WS_MAX_CONNECTIONS", 1...1_000_000, configuration.maxConnections)
        configuration.maxConnectionsPerAddress = try integer(
            "WS_MAX_CONNECTIONS_PER_ADDRESS",
            1...1_000_000,
            configuration.maxConnectionsPerAddress
        )
        configuration.handshakeTimeout = .seconds(try integer("WS_HANDSHAKE_TIMEOUT_SECONDS", 1...3_600, 10))
        configuration.snapshotReuse = .milliseconds(try integer("WS_SNAPSHOT_REUSE_MS", 0...60_000, 1_000))
        configuration.maxPendingSnapshots = try integer(
            "WS_MAX_PENDING_SNAPSHOTS",
            1...100_000,
            configuration.maxPendingSnapshots
        )
        configuration.maxMessagesPerSecond = try integer(
            "WS_MAX_MESSAGES_PER_SECOND",
            1...1_000_000,
            configuration.maxMessagesPerSecond
        )
        var facade = facadeOrigins(port: service.port)
        if let (raw, source) = lookup("WS_FACADE_ORIGIN") {
            facade = raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for origin in facade where OriginPolicy.normalize(origin) == nil {
                throw ConfigurationError(
                    variable: "WS_FACADE_ORIGIN",
                    source: source,
                    message: "expected http(s)://host[:port] origins separated by commas, got '\(origin)'"
                )
            }
        }
        configuration.allowedOrigins = service.corsOrigins + facade
        configuration.writeTimeout = .seconds(try integer("WS_WRITE_TIMEOUT_SECONDS", 1...3_600, 10))
        return configuration
    }
}
