import Foundation

/// Hands one value from a task to a thread that blocks until it arrives.
///
/// `@unchecked Sendable`: `value` is written once under the condition's lock and read under it.
public final class BlockingResult<Value: Sendable>: @unchecked Sendable {
    public init() {}

    private let condition = NSCondition()
    private var value: Value?

    public func set(_ newValue: Value) {
        condition.lock()
        value = newValue
        condition.broadcast()
        condition.unlock()
    }

    public func wait() -> Value {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}
