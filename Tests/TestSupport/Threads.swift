import Foundation
import Synchronization

// The C clients block, and blocking calls must never run on Swift's cooperative pool (two threads on this
// machine): the fixtures run them on threads of their own, and so can the tests.

/// Runs blocking work on a thread of its own (not Dispatch's global queue either: on 2 cores it runs
/// about 2 items at once, so blocked clients would starve it) and awaits its result.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}

/// `count` blocking calls at once from a synchronous context, each on its own thread; results in order.
public func parallel<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> T) throws -> [T] {
    try onThreads(count) { index, _ in try body(index) }
}

/// Runs `body(index, start)` on `threads` dedicated threads. Each thread may open its own connection first
/// and then call `start()`, which returns once every thread that calls it got there, so the work itself
/// starts together. Returns the results in index order; rethrows the first error (by index) a thread threw.
public func onThreads<T: Sendable>(
    _ threads: Int,
    _ body: @escaping @Sendable (_ index: Int, _ start: @Sendable () -> Void) throws -> T
) throws -> [T] {
    let results = Mutex<[Int: Result<T, any Error>]>([:])
    let ready = DispatchSemaphore(value: 0)
    let go = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    for index in 0..<threads {
        done.enter()
        let thread = Thread {
            let started = Locked(false)
            let start: @Sendable () -> Void = {
                let first = started.withLock { started in
                    defer { started = true }
                    return !started
                }
                guard first else { return }
                ready.signal()
                go.wait()
            }
            let result = Result { try body(index, start) }
            start()  // a thread that failed (or never asked) before start() must still let the others go
            results.withLock { $0[index] = result }
            done.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    for _ in 0..<threads { ready.wait() }
    for _ in 0..<threads { go.signal() }
    done.wait()
    let collected = results.withLock { $0 }
    return try (0..<threads).map { try collected[$0]!.get() }
}

/// A value shared between test threads.
public final class Locked<Value>: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Hands a non-Sendable value to the one thread that uses it from then on.
public struct UncheckedBox<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}

// MARK: Bounded polls, for conditions nothing signals

/// Polls `condition` every 5 ms for at most `limit`; whether it came true.
public func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}

/// Polls `condition` every 5 ms; throws, naming `what`, if it is not true within `timeout`.
public func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    guard try await eventually(within: timeout, condition) else {
        throw TestFailure("timed out waiting for \(what)")
    }
}

/// `eventually` whose condition needs to await (polled every 50 ms).
public func eventuallyAsync(_ what: String, timeout: Duration, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}
