import Foundation
import Logging
import PostgresClient

@testable import InventoryRPC

/// Scoped PostgreSQL databases for tests: each call makes its own database on the shared server (so
/// suites run in parallel and twice in a row), optionally migrates it, and drops it afterwards.
///
/// The server is `TEST_DATABASE_URL` (any database on it; default the local `postgres` database).
enum TestDatabase {
    static let adminURL =
        ProcessInfo.processInfo.environment["TEST_DATABASE_URL"]
        ?? "postgresql://postgres:postgres@localhost:5432/postgres"

    static let logger = Logger(label: "test.database") { _ in SwiftLogNoOpLogHandler() }

    /// `adminURL` with its database replaced by `name`.
    static func url(database name: String) -> String {
        guard var components = URLComponents(string: adminURL) else { return adminURL }
        components.path = "/" + name
        return components.string ?? adminURL
    }

    static func create(prefix: String = "inv_test") throws -> String {
        let name = "\(prefix)_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try PostgresConnection(url: adminURL, logger: logger)
        defer { admin.close() }
        try admin.simpleQuery("CREATE DATABASE \"\(name)\"")
        return name
    }

    static func drop(_ name: String) {
        guard let admin = try? PostgresConnection(url: adminURL, logger: logger) else { return }
        defer { admin.close() }
        try? admin.simpleQuery("DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)")
    }

    /// Opens a connection to `url` (the caller closes it).
    static func connect(_ url: String) throws -> PostgresConnection {
        try PostgresConnection(url: url, logger: logger)
    }
}

/// Runs `body` with the URL of a fresh database (migrated unless `migrated: false`), dropped afterwards.
func withTestDatabase<T>(migrated: Bool = true, _ body: (String) throws -> T) throws -> T {
    let name = try TestDatabase.create()
    defer { TestDatabase.drop(name) }
    let url = TestDatabase.url(database: name)
    if migrated {
        let connection = try TestDatabase.connect(url)
        defer { connection.close() }
        try Migrator.migrate(connection, logger: TestDatabase.logger)
    }
    return try body(url)
}

/// The same for async tests. The blocking database calls of set-up and tear-down are short.
func withTestDatabase<T>(migrated: Bool = true, _ body: (String) async throws -> T) async throws -> T {
    let name = try TestDatabase.create()
    defer { TestDatabase.drop(name) }
    let url = TestDatabase.url(database: name)
    if migrated {
        let connection = try TestDatabase.connect(url)
        defer { connection.close() }
        try Migrator.migrate(connection, logger: TestDatabase.logger)
    }
    return try await body(url)
}

/// A value shared between test threads.
final class Locked<Value>: @unchecked Sendable {
    // Every access goes through `lock`.
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Runs `body(index, start)` on `threads` dedicated threads (blocking database calls never run on Swift's
/// cooperative pool). Each thread may open its own connection first and then call `start()`, which returns
/// once every thread got there, so the work itself starts together. Returns the results in index order;
/// rethrows the first error a thread threw.
func onThreads<T: Sendable>(
    _ threads: Int,
    _ body: @escaping @Sendable (_ index: Int, _ start: @Sendable () -> Void) throws -> T
) throws -> [T] {
    let results = Locked<[Int: Result<T, any Error>]>([:])
    let ready = DispatchSemaphore(value: 0)
    let go = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    for index in 0..<threads {
        done.enter()
        let thread = Thread {
            let started = Locked(false)
            let start: @Sendable () -> Void = {
                guard
                    started.withLock({
                        let first = !$0
                        $0 = true
                        return first
                    })
                else { return }
                ready.signal()
                go.wait()
            }
            let result = Result { try body(index, start) }
            start()  // a thread that failed before start() must still let the others go
            results.withLock { $0[index] = result }
            done.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    for _ in 0..<threads { ready.wait() }
    for _ in 0..<threads { go.signal() }
    done.wait()
    return try results.withLock { all in try (0..<threads).map { try all[$0]!.get() } }
}
