import Foundation

// The venue features of INTERFACE.md (issue 15, decision 0018): seat metadata, best-available holds, hold
// extensions and seat history.

/// One seat of a seat map with what a venue knows of it (`seats.define`'s `seats`;
/// contracts/schemas/common.json#/$defs/seatDefinition). Best-available holds choose by `rank` (lower is
/// better; a seat without one comes after every ranked seat), then row (in seat map order), then closeness
/// to the row's centre (by `number`); `together` means one row (`section` and `row`) with consecutive
/// `number`s.
public struct SeatDefinition: Codable, Sendable, Hashable {
    public var seatId: String
    public var section: String?
    public var row: String?
    public var number: Int?
    public var category: String?
    public var rank: Int?

    public init(
        seatId: String,
        section: String? = nil,
        row: String? = nil,
        number: Int? = nil,
        category: String? = nil,
        rank: Int? = nil
    ) {
        self.seatId = seatId
        self.section = section
        self.row = row
        self.number = number
        self.category = category
        self.rank = rank
    }

    public static let maxLabelLength = 64
    public static let numberRange = 0...100_000
    public static let rankRange = 0...1_000_000

    public static let fields: [RequestField] = [
        .init("seatId", .identifier), .init("section", .label, required: false),
        .init("row", .label, required: false), .init("number", .integer(numberRange), required: false),
        .init("category", .label, required: false), .init("rank", .integer(rankRange), required: false),
    ]

    /// `section`, `row`, `category`: 1 to 64 characters, none of them a control character.
    public static func isValidLabel(_ text: String) -> Bool {
        // Counted in code points, as JSON Schema's maxLength counts.
        guard !text.isEmpty, text.unicodeScalars.count <= maxLabelLength else { return false }
        return text.unicodeScalars.allSatisfy { $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value) }
    }
}

/// `hold.request` / `POST /hold` in its best-available form (contracts/schemas/hold-best-available-request.json):
/// `quantity` seats instead of `seatIds`, chosen by the service among the free seats of `section` and
/// `category` (when given), adjacent in one row when `together`. All of them or none; SEAT_UNAVAILABLE with
/// `details: {quantity}` when no suitable set is free.
public struct BestAvailableHoldRequest: ValidatableRequest, Hashable {
    public var showtimeId: String
    public var quantity: Int
    public var userId: String
    public var section: String?
    public var category: String?
    public var together: Bool?
    public var idempotencyKey: String?

    public init(
        showtimeId: String,
        quantity: Int,
        userId: String,
        section: String? = nil,
        category: String? = nil,
        together: Bool? = nil,
        idempotencyKey: String? = nil
    ) {
        self.showtimeId = showtimeId
        self.quantity = quantity
        self.userId = userId
        self.section = section
        self.category = category
        self.together = together
        self.idempotencyKey = idempotencyKey
    }

    public static let fields: [RequestField] = [
        .init("showtimeId", .identifier), .init("quantity", .quantity), .init("userId", .identifier),
        .init("section", .label, required: false), .init("category", .label, required: false),
        .init("together", .boolean, required: false), .init("idempotencyKey", .identifier, required: false),
    ]

    /// A hold request body is this form when it has `quantity` (it is then validated as this form: `seatIds`
    /// beside it is an unknown field).
    public static func isBestAvailable(_ body: JSONValue) -> Bool {
        if case .object(let object) = body, object["quantity"] != nil { return true }
        return false
    }

    /// Same merge of the REST idempotency headers as `HoldRequest.mergingIdempotencyKey`.
    public func mergingIdempotencyKey(headers: [String?]) -> Result<BestAvailableHoldRequest, ErrorBody> {
        let probe = HoldRequest(showtimeId: showtimeId, seatIds: [], userId: userId, idempotencyKey: idempotencyKey)
        return probe.mergingIdempotencyKey(headers: headers).map { merged in
            var copy = self
            copy.idempotencyKey = merged.idempotencyKey
            return copy
        }
    }
}

/// `hold.extend.request` / `POST /holds/{holdId}/extend` (contracts/schemas/hold-extend-request.json): the
/// owner (or an admin, leaving `userId` out) moves `expiresAt` to min(now + `HOLD_TTL_SECONDS`, created +
/// `MAX_HOLD_SECONDS`).
public struct HoldExtendRequest: ValidatableRequest, Hashable {
    public var holdId: String
    public var userId: String?

    public init(holdId: String, userId: String? = nil) {
        self.holdId = holdId
        self.userId = userId
    }

    public static let fields: [RequestField] = [
        .init("holdId", .identifier), .init("userId", .identifier, required: false),
    ]
}

/// `seat.history.request` / `GET /showtimes/{showtimeId}/seats/{seatId}/history` (admin;
/// contracts/schemas/seat-history-request.json): a page of the seat's changes, newest first, `limit` of them
/// (default 50) with versions below `before` (the previous page's `nextBefore`).
public struct SeatHistoryRequest: ValidatableRequest, Hashable {
    public var showtimeId: String
    public var seatId: String
    public var limit: Int?
    public var before: Int64?

    public init(showtimeId: String, seatId: String, limit: Int? = nil, before: Int64? = nil) {
        self.showtimeId = showtimeId
        self.seatId = seatId
        self.limit = limit
        self.before = before
    }

    public static let defaultLimit = 50
    public static let limitRange = 1...500

    public static let fields: [RequestField] = [
        .init("showtimeId", .identifier), .init("seatId", .identifier),
        .init("limit", .integer(limitRange), required: false),
        .init("before", .integer(1...1_000_000_000_000), required: false),
    ]
}

/// One change of a seat (contracts/schemas/seat-history.json#/$defs/entry): the version it produced, the
/// event that reported it, when it took effect (a hold's expiry: its `expiresAt`), the state it left the seat
/// in, and who.
public struct SeatHistoryEntry: Codable, Sendable, Hashable {
    public var version: Int64
    public var type: EventType
    public var occurredAt: Date
    public var state: SeatState
    public var holdId: String
    public var userId: String
    public var orderId: String?
    public var expiresAt: Date?

    public init(
        version: Int64,
        type: EventType,
        occurredAt: Date,
        state: SeatState,
        holdId: String,
        userId: String,
        orderId: String? = nil,
        expiresAt: Date? = nil
    ) {
        self.version = version
        self.type = type
        self.occurredAt = occurredAt
        self.state = state
        self.holdId = holdId
        self.userId = userId
        self.orderId = orderId
        self.expiresAt = expiresAt
    }
}

/// Reply data of `seat.history.request` (contracts/schemas/seat-history.json): newest first; `nextBefore`
/// when older entries remain (pass it as `before`).
public struct SeatHistory: Codable, Sendable, Hashable {
    public var showtimeId: String
    public var seatId: String
    public var entries: [SeatHistoryEntry]
    public var nextBefore: Int64?

    public init(showtimeId: String, seatId: String, entries: [SeatHistoryEntry], nextBefore: Int64? = nil) {
        self.showtimeId = showtimeId
        self.seatId = seatId
        self.entries = entries
        self.nextBefore = nextBefore
    }
}
