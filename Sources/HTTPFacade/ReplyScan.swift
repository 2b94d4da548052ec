import Contracts

/// A structural scan of the core's reply envelope (`{"ok": true, "data": ...}` / `{"ok": false, "error":
/// {...}}`) that finds where `data` or `error` lies in the bytes, without decoding anything (decision 0024).
///
/// It checks what the facade relies on to pass the bytes on: one JSON object with `ok` a literal, `data` an
/// object when `ok` is true, `error` an object when it is false with a known `code`, a `message` string and
/// a `details` object; strings terminated (escapes skipped, no raw control character), brackets balanced
/// and of the same kind, nothing after the envelope. It does not check that a value fits its schema (the
/// contract tests check what the core sends) nor that numbers and literals are well formed inside
/// `data`. Anything it does not recognise returns nil, and the caller falls back to decoding.
///
/// Linear in the reply's size, no allocation.
enum ReplyScan {
    enum Envelope: Equatable {
        /// `data`'s bytes (an object).
        case ok(data: Range<Int>)
        /// The `error` object's bytes and its code.
        case error(object: Range<Int>, code: ErrorCode)
    }

    /// Deeper nesting than this is not recognised (the contract's replies nest four levels at most).
    static let maxDepth = 32

    static func envelope(_ bytes: [UInt8]) -> Envelope? {
        bytes.withUnsafeBufferPointer { buffer -> Envelope? in
            let scanner = Scanner(bytes: buffer)
            var index = scanner.skipWhitespace(0)
            var ok: Bool?
            var data: Range<Int>?
            var error: Range<Int>?
            var duplicate = false
            guard
                let end = scanner.members(
                    of: &index,
                    visit: { key, value in
                        if scanner.equals(key, "ok") {
                            if ok != nil { duplicate = true }
                            if scanner.equals(value, "true") {
                                ok = true
                            } else if scanner.equals(value, "false") {
                                ok = false
                            } else {
                                duplicate = true
                            }
                        } else if scanner.equals(key, "data") {
                            if data != nil { duplicate = true }
                            data = value
                        } else if scanner.equals(key, "error") {
                            if error != nil { duplicate = true }
                            error = value
                        }
                    }
                )
            else { return nil }
            guard !duplicate, scanner.skipWhitespace(end) == buffer.count, let ok else { return nil }
            if ok {
                guard let data, scanner.isObject(data) else { return nil }
                return .ok(data: data)
            }
            guard let error, scanner.isObject(error), let code = scanner.errorCode(in: error) else { return nil }
            return .error(object: error, code: code)
        }
    }

    /// The value of the string member `name` of the object at `object` (top level of that object only),
    /// as raw bytes between the quotes; nil when it is missing, not a string, or holds an escape (whose
    /// meaning would need decoding).
    static func plainString(_ name: String, inObjectAt object: Range<Int>, of bytes: [UInt8]) -> ArraySlice<UInt8>? {
        let range = bytes.withUnsafeBufferPointer { buffer -> Range<Int>? in
            let scanner = Scanner(bytes: buffer)
            var index = object.lowerBound
            var found: Range<Int>?
            var seen = 0
            guard
                scanner.members(
                    of: &index,
                    visit: { key, value in
                        if scanner.equals(key, name) {
                            seen += 1
                            found = value
                        }
                    }
                ) != nil, seen == 1, let value = found
            else { return nil }
            return scanner.plainStringContents(value)
        }
        return range.map { bytes[$0] }
    }

    /// A cursor over the bytes; every function takes and returns indices.
    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>

        func skipWhitespace(_ start: Int) -> Int {
            var index = start
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x0A, 0x0D, 0x09: index += 1
                default: return index
                }
            }
            return index
        }

        func equals(_ range: Range<Int>, _ text: StaticString) -> Bool {
            guard range.count == text.utf8CodeUnitCount else { return false }
            for offset in 0..<range.count where bytes[range.lowerBound + offset] != text.utf8Start[offset] {
                return false
            }
            return true
        }

        func equals(_ range: Range<Int>, _ text: String) -> Bool {
            var utf8 = text.utf8.makeIterator()
            for index in range {
                guard let byte = utf8.next(), byte == bytes[index] else { return false }
            }
            return utf8.next() == nil
        }

        func isObject(_ range: Range<Int>) -> Bool {
            !range.isEmpty && bytes[range.lowerBound] == UInt8(ascii: "{")
        }

        /// The members of the object starting at `index`: `visit(key, value)` gets the key's bytes (inside
        /// the quotes, escapes not interpreted) and the value's range. Returns the index after the closing
        /// brace, nil when the bytes there are not an object.
        func members(of index: inout Int, visit: (Range<Int>, Range<Int>) -> Void) -> Int? {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
            index = skipWhitespace(index + 1)
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { return index + 1 }
            while true {
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let keyEnd = stringEnd(index) else {
                    return nil
                }
                let key = (index + 1)..<(keyEnd - 1)
                index = skipWhitespace(keyEnd)
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                let valueStart = skipWhitespace(index + 1)
                guard let valueEnd = valueEnd(valueStart) else { return nil }
                visit(key, valueStart..<valueEnd)
                index = skipWhitespace(valueEnd)
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: "}") { return index + 1 }
                guard bytes[index] == UInt8(ascii: ",") else { return nil }
                index = skipWhitespace(index + 1)
            }
        }

        /// `start` is at a quote: the index after the closing quote; nil when the string never ends or holds
        /// a raw control character.
        func stringEnd(_ start: Int) -> Int? {
            var index = start + 1
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") { return index + 1 }
                if byte == UInt8(ascii: "\\") {
                    index += 2
                    continue
                }
                if byte < 0x20 { return nil }
                index += 1
            }
            return nil
        }

        /// The end of the value starting at `start`: a string, an object or array (brackets matched by kind,
        /// strings inside skipped), or a literal or number (its characters up to a delimiter).
        func valueEnd(_ start: Int) -> Int? {
            guard start < bytes.count else { return nil }
            switch bytes[start] {
            case UInt8(ascii: "\""):
                return stringEnd(start)
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                // A stack of open brackets, one bit each (1: object), up to `maxDepth`.
                var open: UInt64 = 0
                var depth = 0
                var index = start
                while index < bytes.count {
                    switch bytes[index] {
                    case UInt8(ascii: "\""):
                        guard let end = stringEnd(index) else { return nil }
                        index = end
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        guard depth < ReplyScan.maxDepth else { return nil }
                        open = (open << 1) | (bytes[index] == UInt8(ascii: "{") ? 1 : 0)
                        depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        guard depth > 0, (open & 1 == 1) == (bytes[index] == UInt8(ascii: "}")) else { return nil }
                        open >>= 1
                        depth -= 1
                        if depth == 0 { return index + 1 }
                    default:
                        break
                    }
                    index += 1
                }
                return nil
            default:
                var index = start
                while index < bytes.count {
                    switch bytes[index] {
                    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                        UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "E"):
                        index += 1
                    default:
                        return index == start ? nil : index
                    }
                }
                return index == start ? nil : index
            }
        }

        /// The bytes inside a string value's quotes, nil when `range` is not a string or holds an escape.
        func plainStringContents(_ range: Range<Int>) -> Range<Int>? {
            guard range.count >= 2, bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
            let inside = (range.lowerBound + 1)..<(range.upperBound - 1)
            for index in inside where bytes[index] == UInt8(ascii: "\\") { return nil }
            return inside
        }

        /// The error object's code when it has the three members of the contract's error (`code` a known
        /// code, `message` a string, `details` an object), each once.
        func errorCode(in object: Range<Int>) -> ErrorCode? {
            var index = object.lowerBound
            var code: Range<Int>?
            var message = 0
            var details = 0
            var codes = 0
            guard
                members(
                    of: &index,
                    visit: { key, value in
                        if equals(key, "code") {
                            codes += 1
                            code = plainStringContents(value)
                        } else if equals(key, "message") {
                            message += bytes[value.lowerBound] == UInt8(ascii: "\"") ? 1 : 2
                        } else if equals(key, "details") {
                            details += isObject(value) ? 1 : 2
                        }
                    }
                ) != nil, codes == 1, message == 1, details == 1, let code
            else { return nil }
            return ErrorCode(rawValue: String(decoding: UnsafeBufferPointer(rebasing: bytes[code]), as: UTF8.self))
        }
    }
}
