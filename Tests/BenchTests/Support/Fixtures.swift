import AMQPClient
import Contracts
import Foundation
import InventoryRPC
import Logging
import PostgresClient

let quietLogger = Logger(label: "bench.test") { _ in SwiftLogNoOpLogHandler() }

enum Fixtures {
    static let adminDatabaseURL =
        ProcessInfo.processInfo.environment["TEST_DATABASE_URL"]
        ?? "postgresql://postgres:postgres@localhost:5432/postgres"
    static let brokerURL =
        ProcessInfo.processInfo.environment["TEST_RABBITMQ_URL"] ?? "amqp://guest:guest@localhost:5672"

    static func databaseURL(_ name: String) -> String {
        guard var components = URLComponents(string: adminDatabaseURL) else { return adminDatabaseURL }
        components.path = "/" + name
        return components.string ?? adminDatabaseURL
    }

    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
    }
}

/// A fresh, migrated database, dropped afterwards.
func withScratchDatabase<T>(_ body: (String) throws -> T) throws -> T {
    let name = Fixtures.uniqueName("inv_bench_test")
    let admin = try PostgresConnection(url: Fixtures.adminDatabaseURL, logger: quietLogger)
    defer { admin.close() }
    try admin.simpleQuery("CREATE DATABASE \"\(name)\"")
    defer { try? admin.simpleQuery("DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)") }
    let url = Fixtures.databaseURL(name)
    let connection = try PostgresConnection(url: url, logger: quietLogger)
    defer { connection.close() }
    try Migrator.migrate(connection, logger: quietLogger)
    return try body(url)
}

/// A RabbitMQ vhost of its own (rabbitmqctl), deleted afterwards; the body gets its amqp URL. Without
/// rabbitmqctl, the default vhost: the run's showtime prefix and exclusive queues still keep runs apart.
func withScratchVhost<T>(_ body: (String) throws -> T) throws -> T {
    guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/rabbitmqctl") else {
        return try body(Fixtures.brokerURL)
    }
    let vhost = Fixtures.uniqueName("bench-test")
    try run("rabbitmqctl", ["add_vhost", vhost])
    defer { _ = try? run("rabbitmqctl", ["delete_vhost", vhost]) }
    try run("rabbitmqctl", ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
    return try body(Fixtures.brokerURL + "/" + vhost)
}

@discardableResult
func run(_ tool: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [tool] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: output, as: UTF8.self)
    guard process.terminationStatus == 0 else {
        throw TestFailure("\(tool) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
    }
    return text
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The directory holding the build products (`inventory-rpc`, `inventory-bench`).
func productsDirectory() -> URL? {
    var candidates: [URL] = []
    if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
    candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(root.appendingPathComponent(".build/debug"))
    return candidates.first {
        FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("inventory-rpc").path)
    }
}

/// `inventory-rpc serve` as a subprocess, stopped with SIGTERM.
final class CoreProcess {
    let process = Process()

    init(databaseURL: String, amqpURL: String) throws {
        guard let directory = productsDirectory() else { throw TestFailure("no inventory-rpc build product") }
        process.executableURL = directory.appendingPathComponent("inventory-rpc")
        process.arguments = ["serve"]
        var environment = ProcessInfo.processInfo.environment
        environment["DATABASE_URL"] = databaseURL
        environment["RABBITMQ_URL"] = amqpURL
        // The benchmark's drivers log in as guest: the core's table grants it (and warns at start).
        environment["RPC_PERMISSIONS"] = "\(BrokerPermissions.default) guest=*,act-for-users,admin"
        environment["HOLD_TTL_SECONDS"] = "2"
        environment["EXPIRY_INTERVAL_SECONDS"] = "1"
        environment["OPS_PORT"] = "0"
        environment["LOG_LEVEL"] = "warning"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

/// `http-facade` as a subprocess on a free port (it prints the port it bound), stopped with SIGTERM.
final class FacadeProcess {
    let process = Process()
    let port: Int

    init(amqpURL: String) throws {
        guard let directory = productsDirectory() else { throw TestFailure("no http-facade build product") }
        process.executableURL = directory.appendingPathComponent("http-facade")
        var environment = ProcessInfo.processInfo.environment
        environment["RABBITMQ_URL"] = amqpURL
        environment["PORT"] = "0"
        environment["LOG_LEVEL"] = "warning"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        // "Inventory service running on port N"
        var seen = ""
        let deadline = Date().addingTimeInterval(20)
        var found: Int?
        while found == nil && Date() < deadline && process.isRunning {
            let data = pipe.fileHandleForReading.availableData
            if data.isEmpty { break }
            seen += String(decoding: data, as: UTF8.self)
            if let range = seen.range(of: "running on port ") {
                found = Int(seen[range.upperBound...].prefix { $0.isNumber })
            }
        }
        guard let found else {
            if process.isRunning { process.terminate() }
            throw TestFailure("http-facade did not say its port: \(seen)")
        }
        port = found
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}
