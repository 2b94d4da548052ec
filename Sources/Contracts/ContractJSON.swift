import Foundation

/// The JSON settings of every message, in one place: dates as RFC 3339 UTC with whole seconds
/// (`2026-01-01T12:05:00Z`, the fraction dropped) on encode; with or without fractional seconds, and
/// any offset, on decode. Keys are sorted so that bodies are byte-stable.
public enum ContractJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatDate(date))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseDate(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "\(text) is not an RFC 3339 date-time")
            }
            return date
        }
        return decoder
    }

    /// `2026-01-01T12:05:00Z`: UTC, whole seconds (rounded down).
    public static func formatDate(_ date: Date) -> String {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)).formatted(wholeSeconds)
    }

    /// An RFC 3339 date-time, with or without fractional seconds; nil when it is not one.
    public static func parseDate(_ text: String) -> Date? {
        guard text.count <= 64 else { return nil }
        if let date = try? fractionalSeconds.parse(text) { return date }
        return try? wholeSeconds.parse(text)
    }

    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try encoder().encode(value))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try decoder().decode(type, from: Data(bytes))
    }

    private static let wholeSeconds = Date.ISO8601FormatStyle(timeZone: .gmt)
    private static let fractionalSeconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
}
