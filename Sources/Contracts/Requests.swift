/// `hold.request` / `POST /hold` (contracts/schemas/hold-request.json).
public struct HoldRequest: ValidatableRequest, Hashable {
    public var showtimeId: String
    public var seatIds: [String]
    public var userId: String
    public var idempotencyKey: String?

    public init(showtimeId: String, seatIds: [String], userId: String, idempotencyKey: String? = nil) {
        self.showtimeId = showtimeId
        self.seatIds = seatIds
        self.userId = userId
        self.idempotencyKey = idempotencyKey
    }

    public static let fields: [RequestField] = [
        .init("showtimeId", .identifier), .init("seatIds", .seatIds(.perHold)), .init("userId", .identifier),
        .init("idempotencyKey", .identifier, required: false),
    ]
}

/// `release.request` / `POST /release` (contracts/schemas/release-request.json).
public struct ReleaseRequest: ValidatableRequest, Hashable {
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

/// `purchase.request` / `POST /purchase` (contracts/schemas/purchase-request.json).
public struct PurchaseRequest: ValidatableRequest, Hashable {
    public var holdId: String
    public var orderId: String
    public var userId: String?

    public init(holdId: String, orderId: String, userId: String? = nil) {
        self.holdId = holdId
        self.orderId = orderId
        self.userId = userId
    }

    public static let fields: [RequestField] = [
        .init("holdId", .identifier), .init("orderId", .identifier), .init("userId", .identifier, required: false),
    ]
}

/// `hold.get.request` / `GET /holds/{holdId}` (contracts/schemas/hold-get-request.json).
/// `userId` may be left out by an admin caller only (INTERFACE.md); when given, the hold must be theirs.
public struct HoldGetRequest: ValidatableRequest, Hashable {
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

/// `availability.request` / `GET /availability?showtimeId=` (contracts/schemas/availability-request.json).
public struct AvailabilityRequest: ValidatableRequest, Hashable {
    public var showtimeId: String

    public init(showtimeId: String) { self.showtimeId = showtimeId }

    public static let fields: [RequestField] = [.init("showtimeId", .identifier)]
}

/// `seats.define.request` (contracts/schemas/seats-define-request.json): the seats as plain ids (`seatIds`)
/// or as objects with metadata (`seats`), exactly one of the two. Seats the showtime does not have are added
/// in the order given; a seat it has keeps its place, and its metadata is set from a `seats` object when it
/// differs (only while the seat is available: otherwise SEAT_UNAVAILABLE, and nothing changes). A plain id
/// never changes an existing seat.
public struct SeatsDefineRequest: ValidatableRequest, Hashable {
    public var showtimeId: String
    public var seatIds: [String]?
    public var seats: [SeatDefinition]?

    public init(showtimeId: String, seatIds: [String]) {
        self.showtimeId = showtimeId
        self.seatIds = seatIds
    }

    public init(showtimeId: String, seats: [SeatDefinition]) {
        self.showtimeId = showtimeId
        self.seats = seats
    }

    public static let fields: [RequestField] = [
        .init("showtimeId", .identifier), .init("seatIds", .seatIds(.perDefine), required: false),
        .init("seats", .seatDefinitions, required: false),
    ]
    public static let exactlyOneOf = ["seatIds", "seats"]

    /// The seats in the order given, and whether each carries metadata (a `seats` object) or is a plain id.
    public var definitions: [(seat: SeatDefinition, hasMetadata: Bool)] {
        if let seats { return seats.map { ($0, true) } }
        return (seatIds ?? []).map { (SeatDefinition(seatId: $0), false) }
    }
}

/// The body of `PUT /showtimes/{showtimeId}/seats`: the seats alone, the showtime is in the path
/// (contracts/schemas/seats-define-body.json).
public struct SeatsDefineBody: ValidatableRequest, Hashable {
    public var seatIds: [String]?
    public var seats: [SeatDefinition]?

    public init(seatIds: [String]) { self.seatIds = seatIds }

    public init(seats: [SeatDefinition]) { self.seats = seats }

    public static let fields: [RequestField] = [
        .init("seatIds", .seatIds(.perDefine), required: false), .init("seats", .seatDefinitions, required: false),
    ]
    public static let exactlyOneOf = ["seatIds", "seats"]

    public func request(showtimeId: String) -> SeatsDefineRequest {
        var request = SeatsDefineRequest(showtimeId: showtimeId, seatIds: [])
        request.seatIds = seatIds
        request.seats = seats
        return request
    }
}

/// `ping.request`: `{}` (contracts/schemas/ping-request.json).
public struct PingRequest: ValidatableRequest, Hashable {
    public init() {}

    public static let fields: [RequestField] = []
}

extension HoldRequest {
    /// The request with the idempotency key of the REST headers (`Idempotency-Key`, or the seed's
    /// `idempotencyKey`) merged in. Each header value must be an identifier, and all of them and the body's
    /// `idempotencyKey` must be equal (else VALIDATION_FAILED at `idempotencyKey`, rule `pattern` or `mismatch`).
    public func mergingIdempotencyKey(headers: [String?]) -> Result<HoldRequest, ErrorBody> {
        let values = headers.compactMap { $0 }
        if let problem = values.lazy.compactMap({ Identifier.problem($0, field: "idempotencyKey") }).first {
            return .failure(.validation([problem]))
        }
        let keys = Set(values + (idempotencyKey.map { [$0] } ?? []))
        guard keys.count <= 1 else {
            return .failure(.validation([ValidationProblem(
                field: "idempotencyKey", rule: .mismatch,
                message: "The Idempotency-Key header and the body's idempotencyKey differ")]))
        }
        var merged = self
        merged.idempotencyKey = keys.first
        return .success(merged)
    }
}
