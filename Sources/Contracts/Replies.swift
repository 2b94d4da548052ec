import Foundation

public enum HoldStatus: String, Codable, CaseIterable, Sendable {
    case active, released, expired, purchased
}

/// A hold as it now stands (contracts/schemas/hold.json); `orderId` only once purchased.
public struct Hold: Codable, Sendable, Hashable {
    public var holdId: String
    public var showtimeId: String
    public var userId: String
    public var seatIds: [String]
    public var status: HoldStatus
    public var expiresAt: Date
    public var orderId: String?

    public init(
        holdId: String, showtimeId: String, userId: String, seatIds: [String], status: HoldStatus, expiresAt: Date,
        orderId: String? = nil
    ) {
        self.holdId = holdId
        self.showtimeId = showtimeId
        self.userId = userId
        self.seatIds = seatIds
        self.status = status
        self.expiresAt = expiresAt
        self.orderId = orderId
    }
}

public enum SeatState: String, Codable, CaseIterable, Sendable {
    case available, held, purchased
}

/// One seat of an availability; `holdExpiresAt` only on held seats. `version` is the seat's version
/// (INTERFACE.md rule 8): it grows with each change of the seat, and an event's `seatVersions` name the
/// version each change produced, so a consumer orders what it applies per seat (decision 0012). A seat
/// no event has touched yet is at version 0.
///
/// The seat's metadata (`section`, `row`, `number`, `category`, `rank`), when the seat map gives it
/// (`seats.define` with `seats`), is carried as well; absent fields are not set.
public struct SeatAvailability: Codable, Sendable, Hashable {
    public var seatId: String
    public var state: SeatState
    public var holdExpiresAt: Date?
    public var version: Int64
    public var section: String?
    public var row: String?
    public var number: Int?
    public var category: String?
    public var rank: Int?

    public init(
        seatId: String, state: SeatState, holdExpiresAt: Date? = nil, version: Int64 = 0, section: String? = nil,
        row: String? = nil, number: Int? = nil, category: String? = nil, rank: Int? = nil
    ) {
        self.seatId = seatId
        self.state = state
        self.holdExpiresAt = holdExpiresAt
        self.version = version
        self.section = section
        self.row = row
        self.number = number
        self.category = category
        self.rank = rank
    }
}

public struct AvailabilitySummary: Codable, Sendable, Hashable {
    public var available: Int
    public var held: Int
    public var purchased: Int

    public init(available: Int, held: Int, purchased: Int) {
        self.available = available
        self.held = held
        self.purchased = purchased
    }

    /// Counts the states of `seats`.
    public init(counting seats: [SeatAvailability]) {
        self.init(available: 0, held: 0, purchased: 0)
        for seat in seats {
            switch seat.state {
            case .available: available += 1
            case .held: held += 1
            case .purchased: purchased += 1
            }
        }
    }
}

/// The seats of a showtime in the order they were defined (contracts/schemas/availability.json).
public struct Availability: Codable, Sendable, Hashable {
    public var showtimeId: String
    public var availability: [SeatAvailability]
    public var summary: AvailabilitySummary

    public init(showtimeId: String, availability: [SeatAvailability], summary: AvailabilitySummary) {
        self.showtimeId = showtimeId
        self.availability = availability
        self.summary = summary
    }

    /// With the summary counted from the seats.
    public init(showtimeId: String, availability: [SeatAvailability]) {
        self.init(showtimeId: showtimeId, availability: availability, summary: AvailabilitySummary(counting: availability))
    }
}

/// Reply data of `seats.define.request`: the seats the showtime has now, how many of the requested ones
/// were new, and how many existing ones got new metadata (`seats` only; contracts/schemas/seats-defined.json).
public struct SeatsDefined: Codable, Sendable, Hashable {
    public var showtimeId: String
    public var seatCount: Int
    public var added: Int
    public var updated: Int

    public init(showtimeId: String, seatCount: Int, added: Int, updated: Int = 0) {
        self.showtimeId = showtimeId
        self.seatCount = seatCount
        self.added = added
        self.updated = updated
    }
}

/// Reply data of `ping.request`, and the body of `/healthz` and `/readyz` when they answer 200.
public struct PingReply: Codable, Sendable, Hashable {
    public var status: String

    public init(status: String = "ok") { self.status = status }
}
