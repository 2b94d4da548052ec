#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The `availability.request` reply written by hand: byte for byte what `ContractJSON.encoder()` writes
/// for `RPCReply<Availability>.ok` (sorted keys, whole-second RFC 3339 UTC dates), without `Codable`.
/// A 2,000-seat reply spent 73 % of the core's CPU in JSONEncoder (BENCHMARKS.md); this is the hot
/// read of a seat map, polled by every client of a rush. `AvailabilityJSONTests` keeps the two equal.
public enum AvailabilityJSON {
    public static func okReply(_ availability: Availability) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + availability.availability.count * 48)
        out += Array(#"{"data":{"availability":["#.utf8)
        for (index, seat) in availability.availability.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "{"))
            // Keys in JSONEncoder's sorted order: category, holdExpiresAt, number, rank, row, seatId, section, ...
            if let category = seat.category {
                out += Array(#""category":"#.utf8)
                appendString(category, to: &out)
                out.append(UInt8(ascii: ","))
            }
            if let expiresAt = seat.holdExpiresAt {
                out += Array(#""holdExpiresAt":""#.utf8)
                appendDate(expiresAt, to: &out)
                out += Array(#"","#.utf8)
            }
            if let number = seat.number { out += Array(#""number":\#(number),"#.utf8) }
            if let rank = seat.rank { out += Array(#""rank":\#(rank),"#.utf8) }
            if let row = seat.row {
                out += Array(#""row":"#.utf8)
                appendString(row, to: &out)
                out.append(UInt8(ascii: ","))
            }
            out += Array(#""seatId":"#.utf8)
            appendString(seat.seatId, to: &out)
            if let section = seat.section {
                out += Array(#","section":"#.utf8)
                appendString(section, to: &out)
            }
            out += Array(#","state":"#.utf8)
            appendString(seat.state.rawValue, to: &out)
            out += Array(#","version":"#.utf8)
            out += Array(String(seat.version).utf8)
            out.append(UInt8(ascii: "}"))
        }
        out += Array(#"],"showtimeId":"#.utf8)
        appendString(availability.showtimeId, to: &out)
        let summary = availability.summary
        out += Array(
            #","summary":{"available":\#(summary.available),"held":\#(summary.held),"purchased":\#(summary.purchased)}},"ok":true}"#
                .utf8
        )
        return out
    }

    /// A JSON string as JSONEncoder escapes it (`"`, `\`, control characters; `/` and non-ASCII as is).
    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `yyyy-MM-ddTHH:mm:ssZ` in UTC, the fraction dropped (as `ContractJSON.formatDate`).
    static func appendDate(_ date: Date, to out: inout [UInt8]) {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) {
            out.append(UInt8(ascii: "0") + UInt8(value / 10))
            out.append(UInt8(ascii: "0") + UInt8(value % 10))
        }
        let year = Int(parts.tm_year) + 1900
        out += Array(String(year).utf8)
        out.append(UInt8(ascii: "-"))
        two(parts.tm_mon + 1)
        out.append(UInt8(ascii: "-"))
        two(parts.tm_mday)
        out.append(UInt8(ascii: "T"))
        two(parts.tm_hour)
        out.append(UInt8(ascii: ":"))
        two(parts.tm_min)
        out.append(UInt8(ascii: ":"))
        two(parts.tm_sec)
        out.append(UInt8(ascii: "Z"))
    }
}
