import Foundation
import Synchronization

/// NSCondition guarding one Bool. NSCondition is thread-safe by design; the stored flag is only touched
/// with the condition's lock held, which is why the `@unchecked Sendable` is sound.
private final class NSConditionBox: @unchecked Sendable {
    private let condition = NSCondition()
    private var flag = false

    func withLock<T>(_ body: (inout Bool) -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body(&flag)
    }

    func broadcast() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    func waitUntil(deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !flag {
            if !condition.wait(until: deadline) { break }
        }
        return flag
    }
}

/// Dedicated threads for the blocking C libraries, and a way to wait until all of them returned.
final class ThreadGroup: Sendable {
    private let running = Mutex(0)
    private let done = NSConditionBox()

    func spawn(name: String, stackSize: Int = 4 << 20, _ body: @escaping @Sendable () -> Void) {
        running.withLock { $0 += 1 }
        let thread = Thread { [self] in
            body()
            let left = running.withLock { count -> Int in
                count -= 1
                return count
            }
            if left == 0 {
                done.withLock { $0 = true }
                done.broadcast()
            }
        }
        thread.name = name
        thread.stackSize = stackSize
        thread.start()
    }

    var count: Int { running.withLock { $0 } }

    /// Waits until every spawned thread returned; false when `timeout` passed first.
    func join(timeout: Duration) -> Bool {
        if count == 0 { return true }
        let deadline = Date().addingTimeInterval(timeout.seconds)
        while count > 0 {
            _ = done.waitUntil(deadline: min(deadline, Date().addingTimeInterval(0.05)))
            if Date() >= deadline { return count == 0 }
        }
        return true
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// Epoch milliseconds now, by this host's clock.
func epochMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
}
