#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A value sent as a text-format parameter (`$1`). The server parses the text as the parameter's type, which
/// it infers from the statement (add a cast such as `$1::timestamptz` where it cannot).
public protocol PostgresEncodable {
    var postgresText: String { get }
}

/// A value read from a result column in text format.
public protocol PostgresDecodable {
    init(postgresText: String) throws(PostgresError)
}

// MARK: Strings and numbers

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self }
    public init(postgresText: String) { self = postgresText }
}

extension Substring: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int(postgresText) else { throw .decoding("not an integer: \(postgresText.debugClip)") }
        self = value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int64(postgresText) else { throw .decoding("not a bigint: \(postgresText.debugClip)") }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int32(postgresText) else { throw .decoding("not an integer: \(postgresText.debugClip)") }
        self = value
    }
}

extension Int16: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int16(postgresText) else { throw .decoding("not a smallint: \(postgresText.debugClip)") }
        self = value
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self ? "t" : "f" }
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "t", "true", "TRUE", "1": self = true
        case "f", "false", "FALSE", "0": self = false
        default: throw .decoding("not a boolean: \(postgresText.debugClip)")
        }
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    /// Shortest text that reads back as the same value; PostgreSQL's spellings for the special values.
    public var postgresText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return description
    }
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "NaN": self = .nan
        case "Infinity": self = .infinity
        case "-Infinity": self = -.infinity
        default:
            guard let value = Double(postgresText) else {
                throw .decoding("not a number: \(postgresText.debugClip)")
            }
            self = value
        }
    }
}

// MARK: Dates and identifiers

extension Date: PostgresEncodable, PostgresDecodable {
    /// RFC 3339 in UTC with microseconds, e.g. `2026-01-01T12:05:00.123456Z`.
    public var postgresText: String { PostgresDate.format(self) }
    /// From `timestamptz` (or `timestamp`, taken as UTC, or `date`) text.
    public init(postgresText: String) throws(PostgresError) {
        guard let date = PostgresDate.parse(postgresText) else {
            throw .decoding("not a timestamp: \(postgresText.debugClip)")
        }
        self = date
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { uuidString.lowercased() }
    public init(postgresText: String) throws(PostgresError) {
        guard let uuid = UUID(uuidString: postgresText) else {
            throw .decoding("not a UUID: \(postgresText.debugClip)")
        }
        self = uuid
    }
}

// MARK: Optionals and arrays

/// Lets a decoder that meets NULL (an array element, or a column decoded as `T?`) produce `nil` for optional types.
protocol PostgresNullable {
    static var postgresNull: Self { get }
}

extension Optional: PostgresNullable {
    static var postgresNull: Self { nil }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public init(postgresText: String) throws(PostgresError) {
        self = .some(try Wrapped(postgresText: postgresText))
    }
}

/// A one-dimensional array, sent as an array literal with every element quoted and escaped, e.g.
/// `{"A-1","say \"hi\"","back\\slash"}`: any characters survive, including `,{}"\`, spaces, `NULL` and "".
extension Array: PostgresEncodable where Element: PostgresEncodable {
    public var postgresText: String { PostgresArrayLiteral.encode(self.lazy.map { $0.postgresText }) }
}

/// A one-dimensional array (or nested arrays for multi-dimensional ones) from its text form. A NULL element
/// decodes to nil when `Element` is optional (`[String?]`) and is a decoding error otherwise.
extension Array: PostgresDecodable where Element: PostgresDecodable {
    public init(postgresText: String) throws(PostgresError) {
        let elements = try PostgresArrayLiteral.decode(postgresText)
        var result: [Element] = []
        result.reserveCapacity(elements.count)
        for element in elements {
            if let element {
                result.append(try Element(postgresText: element))
            } else if let nullable = Element.self as? any PostgresNullable.Type {
                result.append(nullable.postgresNull as! Element)
            } else {
                throw .decoding("array has a NULL element; decode as [\(Element.self)?]")
            }
        }
        self = result
    }
}

/// PostgreSQL's array text format.
public enum PostgresArrayLiteral {
    /// `{"a","b"}` from element texts, each double-quoted with `\` and `"` backslash-escaped.
    public static func encode<S: Sequence<String>>(_ elements: S) -> String {
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        for element in elements {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            bytes.append(UInt8(ascii: "\""))
            for byte in element.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(byte)
            }
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The elements of a one-dimensional array literal; nil for an unquoted NULL. A nested `{...}` element
    /// (multi-dimensional array) is returned verbatim so it can be decoded in turn. A leading dimension
    /// decoration (`[0:1]={...}`) is skipped.
    public static func decode(_ text: String) throws(PostgresError) -> [String?] {
        var text = text
        let result = text.withUTF8 { bytes in
            Result { () throws(PostgresError) -> [String?] in try decode(bytes: bytes) }
        }
        return try result.get()
    }

    static func decode(bytes: UnsafeBufferPointer<UInt8>) throws(PostgresError) -> [String?] {
        let quote = UInt8(ascii: "\"")
        let backslash = UInt8(ascii: "\\")
        let comma = UInt8(ascii: ",")
        let open = UInt8(ascii: "{")
        let close = UInt8(ascii: "}")
        func isSpace(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0B || byte == 0x0C
        }
        func fail(_ why: String) -> PostgresError {
            .decoding("malformed array literal (\(why)): \(String(decoding: bytes, as: UTF8.self).debugClip)")
        }

        var index = 0
        let count = bytes.count
        while index < count, isSpace(bytes[index]) { index += 1 }
        if index < count, bytes[index] == UInt8(ascii: "[") {
            while index < count, bytes[index] != UInt8(ascii: "=") { index += 1 }
            index += 1
            while index < count, isSpace(bytes[index]) { index += 1 }
        }
        guard index < count, bytes[index] == open else { throw fail("no opening brace") }
        index += 1

        var elements: [String?] = []
        var element: [UInt8] = []
        while true {
            while index < count, isSpace(bytes[index]) { index += 1 }
            guard index < count else { throw fail("no closing brace") }
            if bytes[index] == close, elements.isEmpty {  // {}
                index += 1
                break
            }
            element.removeAll(keepingCapacity: true)
            var quoted = false
            if bytes[index] == quote {
                quoted = true
                index += 1
                while true {
                    guard index < count else { throw fail("unterminated quote") }
                    let byte = bytes[index]
                    index += 1
                    if byte == quote { break }
                    if byte == backslash {
                        guard index < count else { throw fail("dangling backslash") }
                        element.append(bytes[index])
                        index += 1
                    } else {
                        element.append(byte)
                    }
                }
                while index < count, isSpace(bytes[index]) { index += 1 }
            } else if bytes[index] == open {
                // A sub-array: keep it whole, braces and quotes included.
                var depth = 0
                var inQuotes = false
                while true {
                    guard index < count else { throw fail("unbalanced braces") }
                    let byte = bytes[index]
                    element.append(byte)
                    index += 1
                    if inQuotes {
                        if byte == backslash, index < count {
                            element.append(bytes[index])
                            index += 1
                        } else if byte == quote {
                            inQuotes = false
                        }
                    } else if byte == quote {
                        inQuotes = true
                    } else if byte == open {
                        depth += 1
                    } else if byte == close {
                        depth -= 1
                        if depth == 0 { break }
                    }
                }
                quoted = true  // never NULL
                while index < count, isSpace(bytes[index]) { index += 1 }
            } else {
                while index < count, bytes[index] != comma, bytes[index] != close {
                    if bytes[index] == backslash, index + 1 < count {
                        index += 1
                    } else if bytes[index] == quote || bytes[index] == open {
                        throw fail("unexpected character")
                    }
                    element.append(bytes[index])
                    index += 1
                }
                while let last = element.last, isSpace(last) { element.removeLast() }
                if element.isEmpty { throw fail("empty unquoted element") }
            }
            if !quoted, element.count == 4, element[0] | 0x20 == UInt8(ascii: "n"),
                element[1] | 0x20 == UInt8(ascii: "u"), element[2] | 0x20 == UInt8(ascii: "l"),
                element[3] | 0x20 == UInt8(ascii: "l")
            {
                elements.append(nil)
            } else {
                elements.append(String(decoding: element, as: UTF8.self))
            }
            guard index < count else { throw fail("no closing brace") }
            if bytes[index] == comma {
                index += 1
                continue
            }
            if bytes[index] == close {
                index += 1
                break
            }
            throw fail("expected ',' or '}'")
        }
        while index < count, isSpace(bytes[index]) { index += 1 }
        guard index == count else { throw fail("text after closing brace") }
        return elements
    }
}

extension String {
    /// For error messages: the value, cut short if long.
    var debugClip: String {
        let limit = 64
        return count <= limit ? "\"\(self)\"" : "\"\(prefix(limit))…\""
    }
}
