import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT and SIGTERM as a callback on a thread of their own.
///
/// libmicrohttpd and the worker threads must never receive these signals, or a SIGTERM can stay
/// pending on a thread nobody watches (see C-LIBRARIES.md, "Signals"). So:
///
/// ```swift
/// SignalHandling.blockTerminationSignals()        // first line of main, before any thread starts
/// ...
/// SignalHandling.onTermination { signal in shutdown.trigger() }
/// ```
///
/// Threads inherit the signal mask of the thread that creates them, so every later thread has both
/// signals blocked and only the waiting thread takes them. A second signal ends the process at once
/// (exit status 128 + signal), for an operator who does not want to wait for a clean stop.
public enum SignalHandling {
    /// The signals that ask the process to stop.
    public static let terminationSignals: [Int32] = [SIGINT, SIGTERM]

    /// Blocks SIGINT and SIGTERM on the calling thread (and so on every thread it starts later) and
    /// ignores SIGPIPE, so a peer that hangs up surfaces as an error from `write`, not a dead process.
    public static func blockTerminationSignals() {
        var set = signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Starts the thread that waits for SIGINT or SIGTERM. The first one calls `handler` with the
    /// signal's number; a second one exits the process immediately. Call it once per process: two
    /// waiting threads would split the signals between them.
    public static func onTermination(_ handler: @escaping @Sendable (Int32) -> Void) {
        _ = SignalWaiter(exitOnSecondSignal: true, handler: handler)
    }

    static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in terminationSignals { sigaddset(&set, signal) }
        return set
    }

    /// `"SIGTERM"` for 15, and so on; for logs.
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(signal)"
        }
    }
}

/// The thread that `sigwait`s. Internal so tests can send it a signal directly (`pthread_kill`),
/// without the process-wide delivery that would end a test runner whose threads do not block it.
final class SignalWaiter: @unchecked Sendable {
    // @unchecked: `thread` is written once before `started` is signalled and only read after.
    private var thread = pthread_t()
    private let started = DispatchSemaphore(value: 0)

    init(exitOnSecondSignal: Bool, handler: @escaping @Sendable (Int32) -> Void) {
        let ready = started
        let box = Unmanaged.passRetained(
            ThreadBody { [self] in
                self.thread = pthread_self()
                var set = SignalHandling.signalSet()
                // sigwait needs the signals blocked on its own thread, whoever started it.
                pthread_sigmask(SIG_BLOCK, &set, nil)
                ready.signal()
                var count = 0
                while true {
                    var received: Int32 = 0
                    guard sigwait(&set, &received) == 0 else { continue }
                    count += 1
                    if count == 1 {
                        handler(received)
                    } else if exitOnSecondSignal {
                        _exit(128 + received)
                    }
                }
            }
        )
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var id = pthread_t()
        let result = pthread_create(
            &id,
            &attributes,
            { argument in
                let body = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
                body.run()
                return nil
            },
            box.toOpaque()
        )
        pthread_attr_destroy(&attributes)
        precondition(result == 0, "cannot start the signal thread: \(String(cString: strerror(result)))")
        started.wait()
    }

    /// Sends `signal` to the waiting thread alone.
    func send(_ signal: Int32) {
        pthread_kill(thread, signal)
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
