import Foundation

/// Tells a running service to stop: the signal thread triggers it, the service waits on it or polls it.
///
/// Thread-safe; waiting blocks the calling thread, so wait from a service's own threads, never from
/// Swift's cooperative pool.
public final class ShutdownSignal: @unchecked Sendable {
    // @unchecked: every field is read and written under `condition`'s lock.
    private let condition = NSCondition()
    private var triggered = false
    private var callbacks: [@Sendable () -> Void] = []

    public init() {}

    /// Starts the shutdown. The first call runs the `onTrigger` callbacks; later calls do nothing.
    public func trigger() {
        condition.lock()
        guard !triggered else {
            condition.unlock()
            return
        }
        triggered = true
        let toRun = callbacks
        callbacks = []
        condition.broadcast()
        condition.unlock()
        for callback in toRun { callback() }
    }

    public var isTriggered: Bool {
        condition.lock()
        defer { condition.unlock() }
        return triggered
    }

    /// Runs `callback` once when the shutdown starts (at once if it has started already), on the
    /// triggering thread. For waking a thread that sleeps elsewhere, such as on an `EventFD`.
    public func onTrigger(_ callback: @escaping @Sendable () -> Void) {
        condition.lock()
        if triggered {
            condition.unlock()
            callback()
            return
        }
        callbacks.append(callback)
        condition.unlock()
    }

    /// Blocks until the shutdown starts.
    public func wait() {
        condition.lock()
        defer { condition.unlock() }
        while !triggered { condition.wait() }
    }

    /// Blocks until the shutdown starts or `timeout` passes; returns whether it started.
    @discardableResult
    public func wait(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let deadline = Date(timeIntervalSinceNow: Double(seconds) + Double(attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while !triggered {
            if !condition.wait(until: deadline) { return triggered }
        }
        return true
    }
}
