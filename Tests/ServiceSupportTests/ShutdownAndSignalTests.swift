import Foundation
import Synchronization
import Testing

@testable import ServiceSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Shutdown signal and signal handling")
struct ShutdownAndSignalTests {
    @Test("wait(timeout:) returns false when nothing triggers, true once triggered")
    func waitTimeout() {
        let shutdown = ShutdownSignal()
        #expect(!shutdown.isTriggered)
        #expect(!shutdown.wait(timeout: .milliseconds(20)))
        shutdown.trigger()
        #expect(shutdown.isTriggered)
        #expect(shutdown.wait(timeout: .zero))
        shutdown.wait()
    }

    @Test("a trigger from another thread wakes a blocked waiter; callbacks run exactly once")
    func triggerFromAnotherThread() async {
        let shutdown = ShutdownSignal()
        let calls = Mutex(0)
        shutdown.onTrigger { calls.withLock { $0 += 1 } }
        let woken = BlockingResult<Bool>()
        Thread { woken.set(shutdown.wait(timeout: .seconds(10))) }.start()
        Thread { shutdown.trigger() }.start()
        let result = await Task.detached { woken.wait() }.value
        #expect(result)
        shutdown.trigger()
        #expect(calls.withLock { $0 } == 1)
        shutdown.onTrigger { calls.withLock { $0 += 10 } }  // after the fact: runs at once
        #expect(calls.withLock { $0 } == 11)
    }

    @Test("SIGTERM and SIGINT reach the handler on the signal thread", arguments: [SIGTERM, SIGINT])
    func signalReachesHandler(signal: Int32) async {
        let received = BlockingResult<Int32>()
        let waiter = SignalWaiter(exitOnSecondSignal: false) { received.set($0) }
        waiter.send(signal)
        let value = await Task.detached { received.wait() }.value
        #expect(value == signal)
        #expect(SignalHandling.name(of: signal) == (signal == SIGTERM ? "SIGTERM" : "SIGINT"))
    }
}
