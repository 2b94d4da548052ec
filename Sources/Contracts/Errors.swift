/// Every error code of INTERFACE.md, with the HTTP status the REST facade answers it with
/// (`contracts/error-codes.json`; a test keeps the two equal).
public enum ErrorCode: String, Codable, CaseIterable, Sendable {
    case validationFailed = "VALIDATION_FAILED"
    case showtimeNotFound = "SHOWTIME_NOT_FOUND"
    case holdNotFound = "HOLD_NOT_FOUND"
    case notFound = "NOT_FOUND"
    case methodNotAllowed = "METHOD_NOT_ALLOWED"
    case unauthenticated = "UNAUTHENTICATED"
    case forbidden = "FORBIDDEN"
    case holdNotOwned = "HOLD_NOT_OWNED"
    case seatUnavailable = "SEAT_UNAVAILABLE"
    case holdNotActive = "HOLD_NOT_ACTIVE"
    case holdExpired = "HOLD_EXPIRED"
    case idempotencyKeyInUse = "IDEMPOTENCY_KEY_IN_USE"
    case unknownSeats = "UNKNOWN_SEATS"
    case idempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"
    case payloadTooLarge = "PAYLOAD_TOO_LARGE"
    case serviceUnavailable = "SERVICE_UNAVAILABLE"
    case upstreamTimeout = "UPSTREAM_TIMEOUT"
    case internalError = "INTERNAL"
    // Venue features (issue 15).
    case extensionLimit = "EXTENSION_LIMIT"
    case uriTooLong = "URI_TOO_LONG"
    case rateLimited = "RATE_LIMITED"
    case headersTooLarge = "HEADERS_TOO_LARGE"
    // Issue 14 (i14-core): the per-user seat limit.
    case seatLimitReached = "SEAT_LIMIT_REACHED"

    public var httpStatus: Int {
        switch self {
        case .validationFailed: 400
        case .unauthenticated: 401
        case .forbidden, .holdNotOwned: 403
        case .showtimeNotFound, .holdNotFound, .notFound: 404
        case .methodNotAllowed: 405
        case .seatUnavailable, .holdNotActive, .holdExpired, .idempotencyKeyInUse: 409
        case .extensionLimit: 409
        case .payloadTooLarge: 413
        case .unknownSeats, .idempotencyKeyReused: 422
        case .internalError: 500
        case .serviceUnavailable: 503
        case .upstreamTimeout: 504
        case .uriTooLong: 414
        case .rateLimited: 429
        case .headersTooLarge: 431
        case .seatLimitReached: 409
        }
    }
}

/// The error object of an RPC reply (`{"ok": false, "error": ...}`) and of a REST error body
/// (`{"error": ...}`). `details` is always encoded, as `{}` when nil.
public struct ErrorBody: Codable, Sendable, Hashable, Error {
    public var code: ErrorCode
    public var message: String
    public var details: [String: JSONValue]?

    public init(code: ErrorCode, message: String, details: [String: JSONValue]? = nil) {
        self.code = code
        self.message = message
        self.details = details
    }

    private enum CodingKeys: String, CodingKey { case code, message, details }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try container.decode(ErrorCode.self, forKey: .code)
        message = try container.decode(String.self, forKey: .message)
        details = try container.decodeIfPresent([String: JSONValue].self, forKey: .details)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(code, forKey: .code)
        try container.encode(message, forKey: .message)
        try container.encode(details ?? [:], forKey: .details)
    }

    /// At most this many problems go into `details.problems`; `details.truncated` says there were more.
    public static let maxReportedProblems = 50

    /// 409 SEAT_UNAVAILABLE: `details.seatIds` lists the seats that were not available.
    public static func seatUnavailable(_ seatIDs: [String]) -> ErrorBody {
        ErrorBody(code: .seatUnavailable, message: "Seat unavailable", details: ["seatIds": .array(seatIDs.map(JSONValue.string))])
    }

    /// 409 SEAT_UNAVAILABLE for a best-available hold: no suitable set of `quantity` seats is free;
    /// `details: {quantity}` (INTERFACE.md, "Venue features").
    public static func noSuitableSeats(quantity: Int) -> ErrorBody {
        ErrorBody(
            code: .seatUnavailable,
            message: "Seat unavailable: no \(quantity) suitable seats are free",
            details: ["quantity": .number(Double(quantity))]
        )
    }

    /// 409 SEAT_LIMIT_REACHED: the hold would take the user past `limit` seats of the showtime; `held` is what
    /// the user has (INTERFACE.md "Limits").
    public static func seatLimitReached(limit: Int, held: Int) -> ErrorBody {
        ErrorBody(
            code: .seatLimitReached,
            message: "Seat limit reached: at most \(limit) seats of a showtime per user (\(held) held)",
            details: ["limit": .number(Double(limit)), "held": .number(Double(held))]
        )
    }

    /// 413 PAYLOAD_TOO_LARGE over AMQP: the request's body (`size` bytes) is over the core's `limit`; it was
    /// not read.
    public static func requestTooLarge(size: Int, limit: Int) -> ErrorBody {
        ErrorBody(
            code: .payloadTooLarge,
            message: "The request body (\(size) bytes) is over the limit of \(limit) bytes",
            details: ["limit": .number(Double(limit)), "size": .number(Double(size))]
        )
    }

    /// 422 UNKNOWN_SEATS: `details.seatIds` lists the seats the seat map does not have.
    public static func unknownSeats(_ seatIDs: [String]) -> ErrorBody {
        ErrorBody(
            code: .unknownSeats,
            message: "Unknown seats: " + seatIDs.prefix(10).joined(separator: ", ") + (seatIDs.count > 10 ? ", ..." : ""),
            details: ["seatIds": .array(seatIDs.map(JSONValue.string))])
    }

    /// 400 VALIDATION_FAILED: `details` is `{"field": <first problem's field>, "problems": [{field, rule,
    /// message}], "truncated": true?}` (contracts/schemas/error.json, `validationDetails`).
    public static func validation(_ problems: [ValidationProblem]) -> ErrorBody {
        let problems = problems.isEmpty
            ? [ValidationProblem(field: "$", rule: .type, message: "The request is not valid")] : problems
        let reported = problems.prefix(maxReportedProblems)
        var details: [String: JSONValue] = [
            "field": .string(problems[0].field),
            "problems": .array(reported.map(\.jsonValue)),
        ]
        if problems.count > reported.count { details["truncated"] = true }
        let message = problems.count == 1
            ? problems[0].message
            : "The request has \(problems.count) problems; the first: \(problems[0].message)"
        return ErrorBody(code: .validationFailed, message: message, details: details)
    }

    /// The problems of a VALIDATION_FAILED body (empty for other codes).
    public var validationProblems: [ValidationProblem] {
        guard code == .validationFailed, case .array(let items)? = details?["problems"] else { return [] }
        return items.compactMap(ValidationProblem.init(jsonValue:))
    }

    /// The REST error body `{"error": {...}}`, encoded.
    public func restBody() -> [UInt8] {
        (try? ContractJSON.encode(RESTErrorBody(error: self)))
            ?? Array(#"{"error":{"code":"INTERNAL","message":"Internal error","details":{}}}"#.utf8)
    }
}

/// The body of every REST error response: `{"error": {"code", "message", "details"}}`.
public struct RESTErrorBody: Codable, Sendable, Hashable {
    public var error: ErrorBody
    public init(error: ErrorBody) { self.error = error }
}

/// The rule a value breaks: the JSON Schema keyword, `json` for a body that is not JSON, `mismatch` for
/// an `Idempotency-Key` header that differs from the body's `idempotencyKey`.
public enum ValidationRule: String, Codable, CaseIterable, Sendable {
    case json, required, type, pattern, minItems, maxItems, uniqueItems, additionalProperties, mismatch
    // Venue features (issue 15): numbers, labels, and "exactly one of" (seatIds or seats, seatIds or quantity).
    case minimum, maximum, minLength, maxLength, oneOf
    case framing
}

/// One problem of a request: the field it concerns (`userId`, `seatIds[2]`, `$` for the body as a whole),
/// the rule it breaks and a message for people.
public struct ValidationProblem: Sendable, Hashable, Codable, Error {
    public var field: String
    public var rule: String
    public var message: String

    public init(field: String, rule: String, message: String) {
        self.field = field
        self.rule = rule
        self.message = message
    }

    public init(field: String, rule: ValidationRule, message: String) {
        self.init(field: field, rule: rule.rawValue, message: message)
    }

    var jsonValue: JSONValue {
        ["field": .string(field), "rule": .string(rule), "message": .string(message)]
    }

    init?(jsonValue: JSONValue) {
        guard case .object(let o) = jsonValue, case .string(let field)? = o["field"],
            case .string(let rule)? = o["rule"], case .string(let message)? = o["message"]
        else { return nil }
        self.init(field: field, rule: rule, message: message)
    }
}
