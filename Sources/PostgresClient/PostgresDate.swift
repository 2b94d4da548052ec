#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Hand-written conversions between `Date` and PostgreSQL's text forms, so that no formatter is created
/// or locked per value (decoding a timestamp is on the hot path of every hold read).
///
/// Calendar arithmetic is proleptic Gregorian in UTC, as PostgreSQL's; day numbers use Howard Hinnant's
/// `days_from_civil` / `civil_from_days`.
public enum PostgresDate {
    /// RFC 3339 in UTC with microseconds (PostgreSQL's precision), e.g. `2026-01-01T12:05:00.123456Z`.
    /// Years before 1 are written with PostgreSQL's ` BC` suffix.
    public static func format(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        guard interval.isFinite else { return interval < 0 ? "-infinity" : "infinity" }
        var seconds = Int64(interval.rounded(.down))
        var micros = Int64(((interval - Double(seconds)) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            seconds += 1
            micros -= 1_000_000
        }
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = civil(fromDays: days)
        let hour = secondOfDay / 3600
        let minute = (secondOfDay % 3600) / 60
        let second = secondOfDay % 60

        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        let displayYear = year > 0 ? year : 1 - year  // 0 is 1 BC
        if displayYear > 9999 {
            bytes.append(contentsOf: String(displayYear).utf8)
        } else {
            appendDigits(&bytes, displayYear, width: 4)
        }
        bytes.append(UInt8(ascii: "-"))
        appendDigits(&bytes, month, width: 2)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(&bytes, day, width: 2)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(&bytes, hour, width: 2)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(&bytes, minute, width: 2)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(&bytes, second, width: 2)
        bytes.append(UInt8(ascii: "."))
        appendDigits(&bytes, micros, width: 6)
        bytes.append(UInt8(ascii: "Z"))
        if year <= 0 { bytes.append(contentsOf: " BC".utf8) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses PostgreSQL's ISO output of `timestamptz` / `timestamp` / `date` (`2026-01-01 12:05:00.123456+00`,
    /// `2026-01-01 17:35:00+05:30`, `0044-03-15 00:00:00+00 BC`, `infinity`) and RFC 3339
    /// (`2026-01-01T12:05:00Z`). A value without a zone is taken as UTC. Returns nil when the text is not one of these.
    public static func parse(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    static func parse(bytes: UnsafeBufferPointer<UInt8>) -> Date? {
        var scanner = ByteScanner(bytes: bytes)
        if let special = scanner.special() { return special }

        guard let year = scanner.integer(minDigits: 4, maxDigits: 9), scanner.take(UInt8(ascii: "-")),
            let month = scanner.integer(minDigits: 2, maxDigits: 2), scanner.take(UInt8(ascii: "-")),
            let day = scanner.integer(minDigits: 2, maxDigits: 2),
            (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year)
        else { return nil }

        var secondOfDay: Int64 = 0
        var fraction = 0.0
        var offsetSeconds: Int64 = 0
        if scanner.take(UInt8(ascii: " ")) || scanner.take(UInt8(ascii: "T")) || scanner.take(UInt8(ascii: "t")) {
            guard let hour = scanner.integer(minDigits: 2, maxDigits: 2), scanner.take(UInt8(ascii: ":")),
                let minute = scanner.integer(minDigits: 2, maxDigits: 2), scanner.take(UInt8(ascii: ":")),
                let second = scanner.integer(minDigits: 2, maxDigits: 2),
                hour <= 24, minute <= 59, second <= 60  // 24:00:00 is valid input to PostgreSQL; 60 a leap second
            else { return nil }
            secondOfDay = hour * 3600 + minute * 60 + second
            if scanner.take(UInt8(ascii: ".")) || scanner.take(UInt8(ascii: ",")) {
                guard let value = scanner.fraction() else { return nil }
                fraction = value
            }
            if scanner.take(UInt8(ascii: "Z")) || scanner.take(UInt8(ascii: "z")) {
                offsetSeconds = 0
            } else if let sign = scanner.sign() {
                guard let offsetHours = scanner.integer(minDigits: 2, maxDigits: 2) else { return nil }
                var offset = offsetHours * 3600
                if scanner.take(UInt8(ascii: ":")) {
                    guard let offsetMinutes = scanner.integer(minDigits: 2, maxDigits: 2) else { return nil }
                    offset += offsetMinutes * 60
                    if scanner.take(UInt8(ascii: ":")) {
                        guard let offsetSecs = scanner.integer(minDigits: 2, maxDigits: 2) else { return nil }
                        offset += offsetSecs
                    }
                } else if let offsetMinutes = scanner.integer(minDigits: 2, maxDigits: 2) {
                    offset += offsetMinutes * 60  // +0530
                }
                offsetSeconds = sign * offset
            }
        }
        var astronomicalYear = year
        if scanner.takeSuffixBC() { astronomicalYear = 1 - year }
        guard scanner.atEnd else { return nil }

        let days = daysFromCivil(year: astronomicalYear, month: month, day: day)
        let seconds = days * 86_400 + secondOfDay - offsetSeconds
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    // MARK: Calendar arithmetic

    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2:
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
            return leap ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        var quotient = a / b
        var remainder = a % b
        if remainder < 0 {
            quotient -= 1
            remainder += b
        }
        return (quotient, remainder)
    }

    private static func appendDigits(_ bytes: inout [UInt8], _ value: Int64, width: Int) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        var remaining = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            for index in stride(from: width - 1, through: 0, by: -1) {
                buffer[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
            }
            bytes.append(contentsOf: buffer[0..<width])
        }
    }
}

/// A cursor over ASCII bytes for the date parser.
private struct ByteScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    var atEnd: Bool { index == bytes.count }

    mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    mutating func integer(minDigits: Int, maxDigits: Int) -> Int64? {
        var value: Int64 = 0
        var count = 0
        while index < bytes.count, count < maxDigits {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { break }
            value = value * 10 + Int64(digit)
            index += 1
            count += 1
        }
        return count >= minDigits ? value : nil
    }

    /// Digits after the decimal point, as a fraction of a second (nanosecond precision is plenty).
    mutating func fraction() -> Double? {
        var value: Int64 = 0
        var scale: Int64 = 1
        var count = 0
        while index < bytes.count {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { break }
            if count < 9 {
                value = value * 10 + Int64(digit)
                scale *= 10
            }
            index += 1
            count += 1
        }
        return count > 0 ? Double(value) / Double(scale) : nil
    }

    mutating func sign() -> Int64? {
        if take(UInt8(ascii: "+")) { return 1 }
        if take(UInt8(ascii: "-")) { return -1 }
        return nil
    }

    mutating func takeSuffixBC() -> Bool {
        guard bytes.count - index == 3, bytes[index] == UInt8(ascii: " "),
            bytes[index + 1] | 0x20 == UInt8(ascii: "b"), bytes[index + 2] | 0x20 == UInt8(ascii: "c")
        else { return false }
        index += 3
        return true
    }

    /// `infinity` / `-infinity` as PostgreSQL prints them, mapped to the far ends Foundation offers.
    mutating func special() -> Date? {
        if equals("infinity") { return .distantFuture }
        if equals("-infinity") { return .distantPast }
        return nil
    }

    private func equals(_ word: StaticString) -> Bool {
        guard bytes.count == word.utf8CodeUnitCount else { return false }
        let wordBytes = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        return bytes.elementsEqual(wordBytes)
    }
}
