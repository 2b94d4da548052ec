import Foundation

/// Hands one value from a task to a thread that blocks until it arrives.
///
/// `@unchecked Sendable`: `value` is written once under the condition's lock and read under it.
final class BlockingResult<Value: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value?

    func set(_ newValue: Value) {
        condition.lock()
        value = newValue
        condition.broadcast()
        condition.unlock()
    }

    func wait() -> Value {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}
