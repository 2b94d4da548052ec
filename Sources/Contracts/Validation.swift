import Foundation

/// The limits a request is validated against.
public struct RequestLimits: Sendable, Hashable {
    /// `MAX_SEATS_PER_HOLD` (default 10).
    public var maxSeatsPerHold: Int
    public static let maxSeatsPerDefine = 10_000
    /// Largest body the facade reads (64 KiB; over it: 413 PAYLOAD_TOO_LARGE).
    public static let maxBodyBytes = 65_536
    /// Bodies nested deeper than this are rejected as malformed.
    public static let maxNestingDepth = 32

    public init(maxSeatsPerHold: Int = 10) { self.maxSeatsPerHold = maxSeatsPerHold }

    public static let `default` = RequestLimits()
}

/// Identifiers (`showtimeId`, `seatId`, `userId`, `orderId`, `holdId`, idempotency keys): 1 to 128
/// characters of `A-Z a-z 0-9 . _ : -`.
public enum Identifier {
    public static let maxLength = 128
    public static let pattern = "^[A-Za-z0-9._:-]{1,128}$"

    public static func isValid(_ value: String) -> Bool {
        let utf8 = value.utf8
        guard !utf8.isEmpty, utf8.count <= maxLength else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }

    /// The problem with `value` as the identifier `field` (a header, path or query parameter), if any.
    public static func problem(_ value: String, field: String) -> ValidationProblem? {
        isValid(value) ? nil : ValidationProblem(field: field, rule: .pattern, message: patternMessage(field))
    }

    static func patternMessage(_ field: String) -> String {
        "\(field) must be 1 to 128 characters of A-Z a-z 0-9 . _ : -"
    }
}

/// One field of a request, as its JSON Schema describes it.
public struct RequestField: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case identifier
        case seatIds(SeatListLimit)
        // Venue features (issue 15).
        /// A seat count of a best-available hold: an integer from 1 to `maxSeatsPerHold`.
        case quantity
        /// An integer within the range.
        case integer(ClosedRange<Int>)
        case boolean
        /// A seat map label (`section`, `row`, `category`): 1 to `SeatDefinition.maxLabelLength` characters,
        /// no control characters.
        case label
        /// `seats` of `seats.define`: 1 to `maxSeatsPerDefine` seat objects (`SeatDefinition`), no seat twice.
        case seatDefinitions
    }

    public enum SeatListLimit: Sendable, Hashable {
        /// `RequestLimits.maxSeatsPerHold`.
        case perHold
        /// `RequestLimits.maxSeatsPerDefine`.
        case perDefine

        func maxItems(_ limits: RequestLimits) -> Int {
            switch self {
            case .perHold: limits.maxSeatsPerHold
            case .perDefine: RequestLimits.maxSeatsPerDefine
            }
        }
    }

    public var name: String
    public var kind: Kind
    public var required: Bool

    public init(_ name: String, _ kind: Kind, required: Bool = true) {
        self.name = name
        self.kind = kind
        self.required = required
    }
}

/// A request body: its fields as the JSON Schema has them (a test keeps the two equal), and validation
/// that returns every problem found, each naming its field.
public protocol ValidatableRequest: Codable, Sendable {
    static var fields: [RequestField] { get }
    /// Fields of which exactly one must be given (`seatIds` or `seats`); empty for most requests. Each of them
    /// is an optional field of `fields`.
    static var exactlyOneOf: [String] { get }
    func validate(limits: RequestLimits) -> [ValidationProblem]
}

extension ValidatableRequest {
    public static var exactlyOneOf: [String] { [] }
}

extension ValidatableRequest {
    public func validate(limits: RequestLimits) -> [ValidationProblem] {
        guard let bytes = try? ContractJSON.encode(self), let value = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        else { return [ValidationProblem(field: "$", rule: .type, message: "The request cannot be encoded")] }
        return RequestDecoder.problems(in: value, fields: Self.fields, limits: limits, exactlyOneOf: Self.exactlyOneOf)
    }
}

/// Decodes request bodies without trusting them: the body is parsed into `JSONValue` (strictly, nesting
/// bounded), every field is checked against its rules, and only a body without problems is decoded
/// into the request type.
public enum RequestDecoder {
    public static func decode<T: ValidatableRequest>(_ type: T.Type, from body: [UInt8], limits: RequestLimits)
        -> Result<T, ErrorBody>
    {
        switch parse(body) {
        case .success(let value): decode(type, from: value, limits: limits)
        case .failure(let problem): .failure(.validation([problem]))
        }
    }

    /// For requests the facade builds from a path or query (`{"holdId": ...}`, `{"showtimeId": ...}`).
    public static func decode<T: ValidatableRequest>(_ type: T.Type, from value: JSONValue, limits: RequestLimits)
        -> Result<T, ErrorBody>
    {
        let problems = problems(in: value, fields: T.fields, limits: limits, exactlyOneOf: T.exactlyOneOf)
        guard problems.isEmpty else { return .failure(.validation(problems)) }
        do {
            return .success(try ContractJSON.decoder().decode(T.self, from: try ContractJSON.encoder().encode(value)))
        } catch {
            // Unreachable while `fields` matches the type (a test checks it); still no crash.
            return .failure(.validation([ValidationProblem(field: "$", rule: .type, message: "The request does not fit its type")]))
        }
    }

    /// The body as a JSON value, or the `json` problem that says why it is not one.
    public static func parse(_ body: [UInt8]) -> Result<JSONValue, ValidationProblem> {
        do {
            return .success(try JSONParser.parse(body, maxDepth: RequestLimits.maxNestingDepth))
        } catch {
            return .failure(ValidationProblem(field: "$", rule: .json, message: error.message))
        }
    }

    /// Every problem of `value` as a body with `fields`: type first (a field of the wrong type is not
    /// checked further), then the field's own rules; declared fields in order, then unknown fields by name.
    public static func problems(
        in value: JSONValue, fields: [RequestField], limits: RequestLimits, exactlyOneOf: [String] = []
    ) -> [ValidationProblem] {
        guard case .object(let object) = value else {
            return [ValidationProblem(field: "$", rule: .type, message: "The body must be a JSON object, not \(article(value.typeName))")]
        }
        var problems: [ValidationProblem] = []
        if !exactlyOneOf.isEmpty {
            let given = exactlyOneOf.filter { object[$0] != nil }
            let names = exactlyOneOf.joined(separator: " or ")
            if given.isEmpty {
                problems.append(
                    ValidationProblem(field: exactlyOneOf[0], rule: .required, message: "\(names) is required"))
            } else if given.count > 1 {
                problems.append(ValidationProblem(
                    field: given[1], rule: .oneOf, message: "Give \(names), not both"))
            }
        }
        for field in fields {
            guard let fieldValue = object[field.name] else {
                if field.required {
                    problems.append(ValidationProblem(field: field.name, rule: .required, message: "\(field.name) is required"))
                }
                continue
            }
            switch field.kind {
            case .identifier:
                checkIdentifier(fieldValue, field: field.name, into: &problems)
            case .seatIds(let limit):
                checkSeatIDs(fieldValue, field: field.name, maxItems: limit.maxItems(limits), into: &problems)
            case .quantity:
                checkInteger(fieldValue, field: field.name, range: 1...max(1, limits.maxSeatsPerHold), into: &problems)
            case .integer(let range):
                checkInteger(fieldValue, field: field.name, range: range, into: &problems)
            case .boolean:
                if case .bool = fieldValue {} else {
                    problems.append(ValidationProblem(
                        field: field.name, rule: .type,
                        message: "\(field.name) must be true or false, not \(article(fieldValue.typeName))"))
                }
            case .label:
                checkLabel(fieldValue, field: field.name, into: &problems)
            case .seatDefinitions:
                checkSeatDefinitions(fieldValue, field: field.name, into: &problems)
            }
        }
        let known = Set(fields.map(\.name))
        for name in object.keys.filter({ !known.contains($0) }).sorted() {
            // The error schema wants a non-empty field path: an empty property name is shown as `""`.
            let field = name.isEmpty ? "\"\"" : name
            problems.append(ValidationProblem(
                field: field, rule: .additionalProperties, message: "\(fieldLabel(field)) is not a field of this request"))
        }
        return problems
    }

    private static func checkIdentifier(_ value: JSONValue, field: String, into problems: inout [ValidationProblem]) {
        guard case .string(let text) = value else {
            problems.append(ValidationProblem(field: field, rule: .type, message: "\(field) must be a string, not \(article(value.typeName))"))
            return
        }
        if let problem = Identifier.problem(text, field: field) { problems.append(problem) }
    }

    private static func checkSeatIDs(_ value: JSONValue, field: String, maxItems: Int, into problems: inout [ValidationProblem]) {
        guard case .array(let items) = value else {
            problems.append(ValidationProblem(
                field: field, rule: .type, message: "\(field) must be an array of seat ids, not \(article(value.typeName))"))
            return
        }
        if items.isEmpty {
            problems.append(ValidationProblem(field: field, rule: .minItems, message: "\(field) must name at least one seat"))
        }
        if items.count > maxItems {
            problems.append(ValidationProblem(
                field: field, rule: .maxItems, message: "\(field) names \(items.count) seats; at most \(maxItems) are allowed"))
        }
        var seen: Set<String> = []
        var duplicates: [String] = []
        var elementProblems = 0
        for (index, item) in items.enumerated() {
            let element = "\(field)[\(index)]"
            if case .string(let text) = item {
                if !seen.insert(text).inserted, duplicates.count < 10, !duplicates.contains(text) { duplicates.append(text) }
                if !Identifier.isValid(text) {
                    elementProblems += 1
                    if elementProblems <= ErrorBody.maxReportedProblems {
                        problems.append(ValidationProblem(field: element, rule: .pattern, message: Identifier.patternMessage(element)))
                    }
                }
            } else {
                elementProblems += 1
                if elementProblems <= ErrorBody.maxReportedProblems {
                    problems.append(ValidationProblem(
                        field: element, rule: .type, message: "\(element) must be a string, not \(article(item.typeName))"))
                }
            }
        }
        if !duplicates.isEmpty {
            problems.append(ValidationProblem(
                field: field, rule: .uniqueItems,
                message: "\(field) names a seat more than once: " + duplicates.joined(separator: ", ")))
        }
    }

    private static func checkInteger(
        _ value: JSONValue, field: String, range: ClosedRange<Int>, into problems: inout [ValidationProblem]
    ) {
        guard case .number(let number) = value, number.rounded() == number, abs(number) < 1e15 else {
            problems.append(ValidationProblem(
                field: field, rule: .type, message: "\(field) must be a whole number, not \(article(value.typeName))"))
            return
        }
        if number < Double(range.lowerBound) {
            problems.append(ValidationProblem(
                field: field, rule: .minimum, message: "\(field) must be at least \(range.lowerBound)"))
        } else if number > Double(range.upperBound) {
            problems.append(ValidationProblem(
                field: field, rule: .maximum, message: "\(field) must be at most \(range.upperBound)"))
        }
    }

    private static func checkLabel(_ value: JSONValue, field: String, into problems: inout [ValidationProblem]) {
        guard case .string(let text) = value else {
            problems.append(ValidationProblem(
                field: field, rule: .type, message: "\(field) must be a string, not \(article(value.typeName))"))
            return
        }
        if !SeatDefinition.isValidLabel(text) {
            // The JSON Schema keyword that fails first: minLength, maxLength (in code points), then pattern.
            let length = text.unicodeScalars.count
            let rule: ValidationRule =
                length == 0 ? .minLength : length > SeatDefinition.maxLabelLength ? .maxLength : .pattern
            problems.append(ValidationProblem(
                field: field, rule: rule,
                message: "\(field) must be 1 to \(SeatDefinition.maxLabelLength) characters, none a control character"))
        }
    }

    private static func checkSeatDefinitions(
        _ value: JSONValue, field: String, into problems: inout [ValidationProblem]
    ) {
        guard case .array(let items) = value else {
            problems.append(ValidationProblem(
                field: field, rule: .type,
                message: "\(field) must be an array of seats, not \(article(value.typeName))"))
            return
        }
        if items.isEmpty {
            problems.append(
                ValidationProblem(field: field, rule: .minItems, message: "\(field) must name at least one seat"))
        }
        if items.count > RequestLimits.maxSeatsPerDefine {
            problems.append(ValidationProblem(
                field: field, rule: .maxItems,
                message: "\(field) names \(items.count) seats; at most \(RequestLimits.maxSeatsPerDefine) are allowed"))
        }
        var seen: Set<String> = []
        var duplicates: [String] = []
        for (index, item) in items.enumerated() {
            if problems.count > ErrorBody.maxReportedProblems { break }
            let element = "\(field)[\(index)]"
            var found = Self.problems(in: item, fields: SeatDefinition.fields, limits: .default)
            for i in found.indices {
                found[i].field = found[i].field == "$" ? element : "\(element).\(found[i].field)"
            }
            problems += found
            if case .object(let object) = item, case .string(let seatID)? = object["seatId"],
                !seen.insert(seatID).inserted, duplicates.count < 10, !duplicates.contains(seatID)
            {
                duplicates.append(seatID)
            }
        }
        if !duplicates.isEmpty {
            problems.append(ValidationProblem(
                field: field, rule: .uniqueItems,
                message: "\(field) names a seat more than once: " + duplicates.joined(separator: ", ")))
        }
    }

    /// Field names from a hostile body are shown shortened.
    private static func fieldLabel(_ name: String) -> String {
        name.count > 64 ? String(name.prefix(64)) + "..." : name
    }

    private static func article(_ typeName: String) -> String {
        typeName == "array" || typeName == "object" || typeName == "integer" ? "an \(typeName)" : "a \(typeName)"
    }
}
