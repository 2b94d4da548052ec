import Foundation

/// The events of the `inventory.events` topic exchange; the routing key is the type.
public enum EventType: String, Codable, CaseIterable, Sendable {
    case holdCreated = "hold.created"
    case holdReleased = "hold.released"
    case holdExpired = "hold.expired"
    case seatsPurchased = "seats.purchased"

    public static let exchange = "inventory.events"

    public var routingKey: String { rawValue }
}

/// Body of every event (contracts/schemas/event.json): `expiresAt` on `hold.created` and only there,
/// `orderId` on `seats.purchased` and only there. Published persistent with `message_id` = `eventId`.
public struct InventoryEvent: Codable, Sendable, Hashable {
    public var eventId: String
    public var type: EventType
    public var occurredAt: Date
    public var showtimeId: String
    public var holdId: String
    public var userId: String
    public var seatIds: [String]
    public var expiresAt: Date?
    public var orderId: String?

    public init(
        eventId: String, type: EventType, occurredAt: Date, showtimeId: String, holdId: String, userId: String,
        seatIds: [String], expiresAt: Date? = nil, orderId: String? = nil
    ) {
        self.eventId = eventId
        self.type = type
        self.occurredAt = occurredAt
        self.showtimeId = showtimeId
        self.holdId = holdId
        self.userId = userId
        self.seatIds = seatIds
        self.expiresAt = expiresAt
        self.orderId = orderId
    }

    /// The event of `type` about `hold`: `expiresAt` set for `hold.created`, `orderId` for `seats.purchased`.
    public init(eventId: String, type: EventType, occurredAt: Date, hold: Hold) {
        self.init(
            eventId: eventId, type: type, occurredAt: occurredAt, showtimeId: hold.showtimeId, holdId: hold.holdId,
            userId: hold.userId, seatIds: hold.seatIds,
            expiresAt: type == .holdCreated ? hold.expiresAt : nil,
            orderId: type == .seatsPurchased ? hold.orderId : nil)
    }
}
