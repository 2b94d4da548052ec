import Foundation
import Synchronization

/// A result slot written by one thread and read after it finished.
final class ResultBox<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    func set(_ newValue: T) { value.withLock { $0 = newValue } }
    func get() -> T? { value.withLock { $0 } }
}

/// Runs `body(i)` on `count` dedicated threads (the C connections block: never on Swift's cooperative
/// pool) and waits for all of them.
func onDedicatedThreads<T: Sendable>(_ count: Int, name: String, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let group = DispatchGroup()
    let boxes = (0..<count).map { _ in ResultBox<T>() }
    for index in 0..<count {
        group.enter()
        let box = boxes[index]
        let thread = Thread {
            box.set(body(index))
            group.leave()
        }
        thread.name = "\(name)-\(index)"
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
    return boxes.map { $0.get()! }
}

/// A thread started now and joined later.
final class BackgroundThread<T: Sendable>: Sendable {
    private let box = ResultBox<T>()
    private let done = DispatchSemaphore(value: 0)

    init(name: String, _ body: @escaping @Sendable () -> T) {
        let box = self.box
        let done = self.done
        let thread = Thread {
            box.set(body())
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    func join() -> T {
        done.wait()
        done.signal()
        return box.get()!
    }
}

/// Microseconds between two instants of the monotonic clock.
@inline(__always)
func microseconds(from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) -> UInt64 {
    let duration = end - start
    let (seconds, attoseconds) = duration.components
    return UInt64(max(0, seconds)) &* 1_000_000 &+ UInt64(max(0, attoseconds / 1_000_000_000_000))
}

/// When the clients start, when measuring starts (after the warm-up) and when it ends; answers are
/// awaited `timeout` longer.
public struct RunWindow: Sendable {
    public var start: ContinuousClock.Instant
    public var measureStart: ContinuousClock.Instant
    public var end: ContinuousClock.Instant
    public var timeout: Duration

    public init(warmup: Duration, duration: Duration, timeout: Duration) {
        start = .now
        measureStart = start + warmup
        end = measureStart + duration
        self.timeout = timeout
    }

    public var measuredSeconds: Double {
        let (seconds, attoseconds) = (end - measureStart).components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// A flag one thread raises and others poll.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func raise() { value.store(true, ordering: .releasing) }
    var isRaised: Bool { value.load(ordering: .acquiring) }
}
