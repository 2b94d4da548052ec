import Foundation

/// A child process started with posix_spawn, with the signal mask and dispositions reset.
///
/// Foundation's `Process` passes on the spawning thread's signal mask (a redis-server started from a test
/// thread ignored SIGTERM) and its `waitUntilExit` can hang off the main thread; this does neither.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `pid` is immutable and `status` is written only by `wait`, which one caller uses.
    let pid: pid_t
    private var status: Int32?

    init(_ path: String, _ arguments: [String], environment: [String: String]? = nil, outputPath: String? = nil) throws
    {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        let output = outputPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&fileActions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)

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

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environment = environment ?? ProcessInfo.processInfo.environment
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &fileActions, &attributes, argv, envp)
        guard result == 0 else { throw FixtureError("posix_spawn \(path): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    func signal(_ signal: Int32) {
        if status == nil { kill(pid, signal) }
    }

    /// Waits for the exit; returns the exit status (128 + signal when killed).
    @discardableResult
    func wait() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let code = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        status = code
        return code
    }

    /// Waits up to `timeout`; nil if still running then.
    func wait(timeout: Duration) -> Int32? {
        if let status { return status }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var raw: Int32 = 0
            let result = waitpid(pid, &raw, WNOHANG)
            if result == pid {
                let code = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
                status = code
                return code
            }
            usleep(10_000)
        }
        return nil
    }

    var isRunning: Bool {
        if status != nil { return false }
        return wait(timeout: .zero) == nil
    }
}

/// Runs a command to its end; returns its exit status and output (stdout and stderr together).
@discardableResult
func runProcess(_ path: String, _ arguments: [String]) throws -> (status: Int32, text: String) {
    let outputPath = NSTemporaryDirectory() + "core-test-\(uniqueID()).out"
    defer { unlink(outputPath) }
    let child = try ChildProcess(path, arguments, outputPath: outputPath)
    let status = child.wait()
    let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    return (status, text)
}
