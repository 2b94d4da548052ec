import Foundation

/// The events of the `inventory.events` topic exchange; the routing key is the type.
public enum EventType: String, Codable, CaseIterable, Sendable {
    case holdCreated = "hold.created"
    case holdExtended = "hold.extended"
    case holdReleased = "hold.released"
    case holdExpired = "hold.expired"
    case seatsPurchased = "seats.purchased"

    public static let exchange = "inventory.events"

    public var routingKey: String { rawValue }
}

/// Body of every event (contracts/schemas/event.json): `expiresAt` on `hold.created` and `hold.extended` only,
/// `orderId` on `seats.purchased` and only there. Published persistent with `message_id` = `eventId`.
///
/// `seatIds` are exactly the seats whose state the event changed, in the hold's order: all of the hold's
/// for `hold.created` and `seats.purchased`; for `hold.released` and `hold.expired` only those still
/// held by the hold when it ended (a newer hold may have taken a dead hold's seats), possibly none.
/// `seatVersions` gives each of them its new version (INTERFACE.md rule 8, decision 0012): a consumer
/// applies the change to a seat only when that version is newer than the one it has.
public struct InventoryEvent: Codable, Sendable, Hashable {
    public var eventId: String
    public var type: EventType
    public var occurredAt: Date
    public var showtimeId: String
    public var holdId: String
    public var userId: String
    public var seatIds: [String]
    public var seatVersions: [String: Int64]
    public var expiresAt: Date?
    public var orderId: String?

    public init(
        eventId: String, type: EventType, occurredAt: Date, showtimeId: String, holdId: String, userId: String,
        seatIds: [String], seatVersions: [String: Int64], expiresAt: Date? = nil, orderId: String? = nil
    ) {
        self.eventId = eventId
        self.type = type
        self.occurredAt = occurredAt
        self.showtimeId = showtimeId
        self.holdId = holdId
        self.userId = userId
        self.seatIds = seatIds
        self.seatVersions = seatVersions
        self.expiresAt = expiresAt
        self.orderId = orderId
    }

    /// The event of `type` about `hold` that changed the seats of `seatVersions` (in the hold's order):
    /// `expiresAt` set for `hold.created`, `orderId` for `seats.purchased`.
    public init(eventId: String, type: EventType, occurredAt: Date, hold: Hold, seatVersions: [String: Int64]) {
        self.init(
            eventId: eventId, type: type, occurredAt: occurredAt, showtimeId: hold.showtimeId, holdId: hold.holdId,
            userId: hold.userId, seatIds: hold.seatIds.filter { seatVersions[$0] != nil },
            seatVersions: seatVersions,
            expiresAt: type == .holdCreated || type == .holdExtended ? hold.expiresAt : nil,
            orderId: type == .seatsPurchased ? hold.orderId : nil)
    }

    /// The state the event gives each seat it names.
    public var seatState: SeatState {
        switch type {
        case .holdCreated, .holdExtended: .held
        case .holdReleased, .holdExpired: .available
        case .seatsPurchased: .purchased
        }
    }
}
