/// A reply from Redis (RESP2). Error replies are not values: they are thrown as `RedisError` of kind `.server`.
public enum RedisValue: Sendable, Hashable {
    case null
    case status(String)
    case integer(Int)
    case string(String)
    case array([RedisValue])
}

extension RedisValue {
    /// The text of a bulk string or status reply; nil otherwise.
    public var stringValue: String? {
        switch self {
        case .string(let text), .status(let text): text
        default: nil
        }
    }

    /// An integer reply, or a bulk string holding a decimal integer (what `GET` returns for a counter).
    public var intValue: Int? {
        switch self {
        case .integer(let value): value
        case .string(let text): Int(text)
        default: nil
        }
    }

    /// The elements of an array reply; nil otherwise.
    public var arrayValue: [RedisValue]? {
        if case .array(let elements) = self { elements } else { nil }
    }

    public var isNull: Bool { self == .null }
}

extension RedisValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .null: "(nil)"
        case .status(let text): text
        case .integer(let value): "(integer) \(value)"
        case .string(let text): "\"\(text)\""
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
