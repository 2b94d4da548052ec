import Foundation

/// A child process started with posix_spawn, with the signal mask and dispositions reset; its standard
/// output and error go (appended) to `outputPath`, or nowhere.
///
/// Foundation's `Process` passes on the spawning thread's signal mask (a redis-server started from a test
/// thread ignored SIGTERM) and its `waitUntilExit` can hang off the main thread; this does neither.
public final class ChildProcess: @unchecked Sendable {
    // @unchecked: `pid` is immutable and `status` is written only by `wait`, which one caller uses.
    public let pid: pid_t
    private var status: Int32?

    /// `environment` replaces the test process's environment whole (nil: inherit it).
    public init(
        _ path: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        outputPath: String? = nil,
        currentDirectory: String? = nil
    ) throws {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        let output = outputPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&fileActions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        // Nothing else of the test process's: its sockets (a test may hold a thousand) would count against
        // the child's own limit, and a child holding a listening socket would keep the port.
        _ = addCloseFrom?(&fileActions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        // posix_spawn_file_actions_addchdir_np is not in Swift's Glibc module: env(1) changes directory.
        let (path, arguments) =
            currentDirectory.map { ("/usr/bin/env", ["-C", $0, path] + arguments) } ?? (path, arguments)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environment = environment ?? ProcessInfo.processInfo.environment
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &fileActions, &attributes, argv, envp)
        guard result == 0 else { throw TestFailure("posix_spawn \(path): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    public func signal(_ signal: Int32) {
        if status == nil { kill(pid, signal) }
    }

    /// Waits for the exit; returns the exit status (128 + signal when killed).
    @discardableResult
    public func wait() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let code = Self.exitCode(raw)
        status = code
        return code
    }

    /// Waits up to `timeout`; nil if still running then.
    public func wait(timeout: Duration) -> Int32? {
        if let status { return status }
        let deadline = ContinuousClock.now + timeout
        repeat {
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid {
                let code = Self.exitCode(raw)
                status = code
                return code
            }
            if ContinuousClock.now >= deadline { break }
            usleep(10_000)
        } while true
        return nil
    }

    public var isRunning: Bool {
        if status != nil { return false }
        return wait(timeout: .zero) == nil
    }

    private static func exitCode(_ raw: Int32) -> Int32 {
        (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
    }
}

/// glibc's posix_spawn_file_actions_addclosefrom_np (2.34 and later), which Swift's Glibc module does not
/// show.
private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
private let addCloseFrom: AddCloseFrom? = {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
    return unsafeBitCast(symbol, to: AddCloseFrom.self)
}()

/// Runs a program to its end: its exit status and its output (stdout and stderr together).
/// `environment` is added to the test process's own.
@discardableResult
public func runProcess(
    _ path: String,
    _ arguments: [String],
    environment: [String: String] = [:],
    currentDirectory: String? = nil
) throws -> (status: Int32, output: String) {
    let outputPath = NSTemporaryDirectory() + "test-run-\(uniqueID()).out"
    defer { unlink(outputPath) }
    let child = try ChildProcess(
        path,
        arguments,
        environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
        outputPath: outputPath,
        currentDirectory: currentDirectory
    )
    let status = child.wait()
    let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    return (status, output)
}

/// Where `swift build` put the executables (`inventory-rpc`, `http-facade`, ...): beside the test bundle.
public enum Products {
    /// The build directory holding `inventory-rpc`, or nil when it was not built.
    public static let directory: URL? = {
        // swift test runs .../debug/<package>PackageTests.xctest; the products are in .../debug.
        var candidate = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while candidate.path != "/" {
            if FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("inventory-rpc").path) {
                return candidate
            }
            candidate = candidate.deletingLastPathComponent()
        }
        return nil
    }()

    /// The path of the built executable `name`.
    public static func path(_ name: String) throws -> String {
        guard let directory else {
            throw TestFailure("no build products beside the test bundle: run `swift build --build-tests` first")
        }
        let path = directory.appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("\(name) not built (looked in \(directory.path)): run `swift build --build-tests` first")
        }
        return path
    }
}

/// One of the built executables (`inventory-rpc serve`, `http-facade`, ...) as a child process: its
/// output goes to a log file the test can read; readiness is a line the program prints.
public final class ServerProcess: Sendable {
    public let child: ChildProcess
    public let logPath: String
    private let ownsLog: Bool

    /// Starts the product `name` with `arguments`; `environment` is added to the test process's own. The
    /// output is appended to `logPath` (kept), or to a temporary file that `stop()` removes. It runs in the
    /// temporary directory, where no developer's `.env` file adds to its configuration.
    public init(
        product name: String,
        _ arguments: [String] = [],
        environment: [String: String] = [:],
        logPath: String? = nil
    ) throws {
        let executable = try Products.path(name)
        ownsLog = logPath == nil
        self.logPath = logPath ?? NSTemporaryDirectory() + "\(name)-\(uniqueID()).log"
        child = try ChildProcess(
            executable,
            arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            outputPath: self.logPath,
            currentDirectory: NSTemporaryDirectory()
        )
    }

    /// Everything the process printed so far.
    public var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public var isRunning: Bool { child.isRunning }

    /// Waits (bounded poll) until the output contains `marker`; throws if the process exits first or the
    /// time runs out. For a synchronous caller (the poll blocks its thread).
    public func waitForOutput(containing marker: String, timeout: Duration = .seconds(30)) throws {
        try waitFor("\"\(marker)\"", timeout: timeout) { $0.contains(marker) ? () : nil }
    }

    /// The same for an async caller (the poll sleeps, it does not block a thread of the pool).
    public func waitForOutput(containing marker: String, timeout: Duration = .seconds(30)) async throws {
        try await waitFor("\"\(marker)\"", timeout: timeout) { $0.contains(marker) ? () : nil }
    }

    /// Waits (bounded poll) for a whole line `<prefix><number>` in the output, as a program prints the port
    /// it bound; the number.
    public func waitForNumber(after prefix: String, timeout: Duration = .seconds(30)) throws -> Int {
        try waitFor("\"\(prefix)<number>\"", timeout: timeout) { Self.number(after: prefix, in: $0) }
    }

    /// The same for an async caller.
    public func waitForNumber(after prefix: String, timeout: Duration = .seconds(30)) async throws -> Int {
        try await waitFor("\"\(prefix)<number>\"", timeout: timeout) { Self.number(after: prefix, in: $0) }
    }

    private func waitFor<T>(_ what: String, timeout: Duration, _ probe: (String) -> T?) throws -> T {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let found = try check(what, deadline: deadline, probe) { return found }
            usleep(50_000)
        }
    }

    private func waitFor<T>(_ what: String, timeout: Duration, _ probe: (String) -> T?) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let found = try check(what, deadline: deadline, probe) { return found }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// What `probe` finds in the output; nil to poll again; a failure once the process exited or the time
    /// is up.
    private func check<T>(_ what: String, deadline: ContinuousClock.Instant, _ probe: (String) -> T?) throws -> T? {
        let text = output
        if let found = probe(text) { return found }
        guard child.isRunning else { throw TestFailure("\(logPath): exited before printing \(what):\n\(text)") }
        guard ContinuousClock.now < deadline else {
            throw TestFailure("\(logPath): no \(what) in time:\n\(text.suffix(4000))")
        }
        return nil
    }

    private static func number(after prefix: String, in text: String) -> Int? {
        guard let range = text.range(of: prefix) else { return nil }
        let rest = text[range.upperBound...]
        let digits = rest.prefix { $0.isNumber }
        // Only a complete line: the digits may still be arriving.
        guard rest.dropFirst(digits.count).first?.isNewline == true else { return nil }
        return Int(digits)
    }

    /// SIGTERM, then the exit status (nil if it did not exit within `timeout`; it is killed then).
    @discardableResult
    public func terminate(timeout: Duration = .seconds(10)) -> Int32? {
        child.signal(SIGTERM)
        if let status = child.wait(timeout: timeout) { return status }
        child.signal(SIGKILL)
        child.wait()
        return nil
    }

    /// Terminates the process if it still runs; removes a temporary log.
    public func stop(timeout: Duration = .seconds(10)) {
        if child.isRunning { terminate(timeout: timeout) }
        child.wait()
        if ownsLog { unlink(logPath) }
    }
}

/// The repository this test build came from (for its scripts and data files).
public enum Repository {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
}
