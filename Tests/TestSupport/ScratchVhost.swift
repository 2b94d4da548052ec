import Foundation

/// The shared RabbitMQ, managed with `rabbitmqctl` (as scripts/services.sh sets it up: user guest).
public enum RabbitMQ {
    /// `amqp://user:password@host:port` of the broker (`TEST_RABBITMQ_URL`), without a vhost.
    public static let baseURL =
        ProcessInfo.processInfo.environment["TEST_RABBITMQ_URL"] ?? "amqp://guest:guest@127.0.0.1:5672"

    public static let ctlPath = "/usr/sbin/rabbitmqctl"

    /// The URL of `vhost` on the broker.
    public static func url(vhost: String) -> String { "\(baseURL)/\(vhost)" }

    /// Runs `rabbitmqctl -q arguments...`; its output, or a failure with it. Blocks for about a second
    /// (an Erlang node starts): from async code, call it through `blocking`.
    @discardableResult
    public static func ctl(_ arguments: [String]) throws -> String {
        let (status, output) = try runProcess(ctlPath, ["-q"] + arguments)
        guard status == 0 else { throw TestFailure("rabbitmqctl \(arguments.joined(separator: " ")): \(output)") }
        return output
    }

    /// The broker's ids of the AMQP connections in `vhost` whose client properties contain `text` (the
    /// `connection_name` property, for one, shows only there).
    public static func connections(vhost: String, clientPropertiesContaining text: String) throws -> [String] {
        let listing = try ctl(["list_connections", "--no-table-headers", "pid", "vhost", "client_properties"])
        return listing.split(separator: "\n").compactMap { line -> String? in
            let columns = line.split(separator: "\t", maxSplits: 2).map(String.init)
            guard columns.count == 3, columns[1] == vhost, columns[2].contains(text) else { return nil }
            return columns[0]
        }
    }

    /// Closes those connections from the broker's side, all at once, as a broker that went away would.
    public static func closeConnections(_ pids: [String], reason: String = "test: broker connection lost") throws {
        let closers = try pids.map { pid in
            try ChildProcess(ctlPath, ["-q", "close_connection", pid, reason])
        }
        for closer in closers { closer.wait() }
    }
}

/// A RabbitMQ vhost of the test's own, so that the fixed names of INTERFACE.md (`inventory.rpc`, its
/// queues, `inventory.events`) stay as pinned while tests run beside each other and the engineers'
/// services. `delete()` removes it with everything in it (and closes its connections).
public struct ScratchVhost: Sendable {
    public let name: String

    /// A vhost name; nothing is created yet.
    public init(name: String = "test-\(uniqueID())") {
        self.name = name
    }

    /// Creates a new vhost (guest may do everything in it).
    public static func create(prefix: String = "test") throws -> ScratchVhost {
        let vhost = ScratchVhost(name: "\(prefix)-\(uniqueID())")
        try vhost.create()
        return vhost
    }

    public var url: String { RabbitMQ.url(vhost: name) }

    /// Creates the vhost (again, after `delete()`).
    public func create() throws {
        try RabbitMQ.ctl(["add_vhost", name])
        try RabbitMQ.ctl(["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
    }

    public func delete() throws {
        try RabbitMQ.ctl(["delete_vhost", name])
    }
}

/// Runs `body` in a new vhost, deleted afterwards whatever happens.
public func withScratchVhost<T>(prefix: String = "test", _ body: (ScratchVhost) throws -> T) throws -> T {
    let vhost = try ScratchVhost.create(prefix: prefix)
    defer { try? vhost.delete() }
    return try body(vhost)
}

/// The same for async tests: `rabbitmqctl` runs on a thread of its own, never on Swift's pool.
public func withScratchVhost<T>(
    prefix: String = "test",
    _ body: (ScratchVhost) async throws -> T
) async throws -> T {
    let vhost = try await blocking { try ScratchVhost.create(prefix: prefix) }
    do {
        let result = try await body(vhost)
        _ = try? await blocking { try vhost.delete() }
        return result
    } catch {
        _ = try? await blocking { try vhost.delete() }
        throw error
    }
}
