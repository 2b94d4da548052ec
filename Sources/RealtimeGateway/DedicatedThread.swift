import Foundation
import Synchronization

/// A thread of its own for blocking work (the rabbitmq-c loops), which an async task can await the end
/// of without blocking Swift's cooperative pool.
final class DedicatedThread: Sendable {
    private enum State {
        case running([CheckedContinuation<Void, Never>])
        case finished
    }

    private let state = Mutex(State.running([]))

    init(name: String, body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            body()
            finished()
        }
        thread.name = name
        thread.start()
    }

    private func finished() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            defer { state = .finished }
            if case .running(let waiters) = state { return waiters }
            return []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the thread's body has returned.
    func join() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = state.withLock { state -> Bool in
                switch state {
                case .finished:
                    return true
                case .running(var waiters):
                    waiters.append(continuation)
                    state = .running(waiters)
                    return false
                }
            }
            if finished { continuation.resume() }
        }
    }
}
