/// The checks a request's head passes before its handler sees it: what libmicrohttpd 0.9.75 lets through
/// and a front proxy may read differently (request smuggling), and control characters that C strings cut
/// short (`?showtimeId=st2%00` would otherwise arrive as `st2`). Pure, so it is tested on its own.
enum RequestHygiene {
    struct Field: Equatable {
        var name: [UInt8]
        var value: [UInt8]

        init(name: [UInt8], value: [UInt8]) {
            self.name = name
            self.value = value
        }

        init(_ name: String, _ value: String) {
            self.init(name: Array(name.utf8), value: Array(value.utf8))
        }

        var lowercasedName: String { String(decoding: name, as: UTF8.self).lowercased() }
    }

    /// The request target as sent (before percent-decoding): its length, and no control character in
    /// it, raw or percent-encoded (`%00`-`%1F`, `%7F`).
    static func checkTarget(_ target: [UInt8], maxBytes: Int) -> HTTPRejection? {
        if target.count > maxBytes {
            return HTTPRejection(
                kind: .targetTooLong,
                location: .request,
                message: "The request target is \(target.count) bytes; at most \(maxBytes) are accepted"
            )
        }
        let queryStart = target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex
        if hasControlCharacter(target[..<queryStart]) {
            return HTTPRejection(
                kind: .controlCharacter,
                location: .path,
                message: "The path contains a control character"
            )
        }
        guard queryStart < target.endIndex else { return nil }
        let query = target[(queryStart + 1)...]
        for piece in query.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true)
        where hasControlCharacter(piece) {
            let name = piece.prefix { $0 != UInt8(ascii: "=") }
            let decodedName = String(decoding: percentDecoded(name), as: UTF8.self)
            let shownName = hasControlCharacter(name) ? "" : decodedName
            return HTTPRejection(
                kind: .controlCharacter,
                location: .query(shownName),
                message: shownName.isEmpty
                    ? "The query contains a control character"
                    : "Query argument \(shownName) contains a control character"
            )
        }
        return nil
    }

    /// The head's fields: size, framing (one `Content-Length` at most, never with `Transfer-Encoding`,
    /// which may only be `chunked`; exactly one `Host` in HTTP/1.1), names that are tokens, values without
    /// control characters (horizontal tab allowed).
    static func checkHead(
        version: String,
        fields: [Field],
        targetBytes: Int,
        maxHeaderBytes: Int
    ) -> HTTPRejection? {
        let size = fields.reduce(targetBytes) { $0 + $1.name.count + $1.value.count + 4 }
        if size > maxHeaderBytes {
            return HTTPRejection(
                kind: .headersTooLarge,
                location: .request,
                message: "The request head is over \(maxHeaderBytes) bytes"
            )
        }
        var contentLengths = 0
        var transferEncodings: [String] = []
        var hosts = 0
        for field in fields {
            guard !field.name.isEmpty, field.name.allSatisfy(isTokenCharacter) else {
                return HTTPRejection(
                    kind: .framing,
                    location: .request,
                    message: "A header field name is not a token (RFC 9110, 5.1)"
                )
            }
            let name = field.lowercasedName
            if field.value.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                return HTTPRejection(
                    kind: .controlCharacter,
                    location: .header(name),
                    message: "Header \(name) contains a control character"
                )
            }
            switch name {
            case "content-length": contentLengths += 1
            case "transfer-encoding":
                transferEncodings.append(String(decoding: field.value, as: UTF8.self))
            case "host": hosts += 1
            default: break
            }
        }
        func framing(_ location: HTTPRejection.Location, _ message: String) -> HTTPRejection {
            HTTPRejection(kind: .framing, location: location, message: message)
        }
        if contentLengths > 1 {
            return framing(.header("content-length"), "More than one Content-Length header")
        }
        if !transferEncodings.isEmpty {
            if contentLengths > 0 {
                return framing(.header("transfer-encoding"), "Both Content-Length and Transfer-Encoding")
            }
            let codings = transferEncodings.joined(separator: ",").split(separator: ",").map {
                $0.trimmingSpaces().lowercased()
            }
            if codings != ["chunked"] {
                return framing(.header("transfer-encoding"), "Transfer-Encoding other than chunked")
            }
        }
        if hosts > 1 {
            return framing(.header("host"), "More than one Host header")
        }
        if hosts == 0 && version == "HTTP/1.1" {
            return framing(.header("host"), "An HTTP/1.1 request without Host")
        }
        return nil
    }

    private static func hasControlCharacter(_ bytes: ArraySlice<UInt8>) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte < 0x20 || byte == 0x7F {
                return true
            }
            if byte == UInt8(ascii: "%"), index + 2 < bytes.endIndex,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                let decoded = high << 4 | low
                if decoded < 0x20 || decoded == 0x7F {
                    return true
                }
                index += 3
                continue
            }
            index += 1
        }
        return false
    }

    private static func percentDecoded(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var result: [UInt8] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.endIndex,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                result.append(high << 4 | low)
                index += 3
            } else {
                result.append(bytes[index] == UInt8(ascii: "+") ? UInt8(ascii: " ") : bytes[index])
                index += 1
            }
        }
        return result
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// RFC 9110's `tchar`.
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
