internal import CEventFD

#if canImport(Glibc)
    import Glibc
#endif

/// An eventfd(2) counter, non-blocking: any thread may `signal()`; the owning thread waits on
/// `fileDescriptor` (for example with `AMQPConnection.waitForInput(wakeup:timeout:)`) and then `drain()`s.
///
/// `@unchecked Sendable`: the only state is a file descriptor fixed at init; `write` and `read` on an
/// eventfd are atomic in the kernel, so concurrent `signal()`s and a `drain()` need no lock.
public final class EventFD: @unchecked Sendable {
    public let fileDescriptor: Int32

    public init() throws(AMQPError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else {
            throw AMQPError(
                kind: .connectionFailed, message: "eventfd: \(String(cString: strerror(errno)))", isRetryable: false)
        }
        fileDescriptor = fd
    }

    deinit {
        close(fileDescriptor)
    }

    /// Wakes the waiter. Never blocks; signals before the waiter waits are not lost.
    public func signal() {
        var one: UInt64 = 1
        while true {
            let written = withUnsafeBytes(of: &one) { write(fileDescriptor, $0.baseAddress, $0.count) }
            // EAGAIN means the counter is saturated: the waiter is woken anyway.
            if written >= 0 || errno != EINTR { return }
        }
    }

    /// Resets the counter, so the next wait blocks until the next `signal()`.
    public func drain() {
        var value: UInt64 = 0
        while true {
            let count = withUnsafeMutableBytes(of: &value) { read(fileDescriptor, $0.baseAddress, $0.count) }
            if count >= 0 || errno != EINTR { return }
        }
    }
}
