import Foundation

/// A consumer's view of one showtime's seats, kept as INTERFACE.md rule 8 says (decision 0012): start
/// from an `availability` (or from nothing: a seat not heard of is available at version 0), then apply
/// each event to each seat it names only when the event's version of that seat is newer than the one
/// held. Whatever order the events of different holds arrive in, and whether the availability came
/// before or after some of them, the map ends with exactly what `availability` says. A held seat whose
/// `holdExpiresAt` has passed reads as available, one version on (rule 3: the expiry is a change that
/// the sweep's `hold.expired` confirms later with that very version).
public struct SeatMap: Sendable, Hashable {
    public struct Seat: Sendable, Hashable {
        public var state: SeatState
        public var version: Int64
        public var holdExpiresAt: Date?

        public init(state: SeatState, version: Int64, holdExpiresAt: Date? = nil) {
            self.state = state
            self.version = version
            self.holdExpiresAt = holdExpiresAt
        }

        /// The seat as it reads at `now`: a hold past its expiry has let it go.
        public func reading(at now: Date) -> Seat {
            if state == .held, let expires = holdExpiresAt, expires <= now {
                return Seat(state: .available, version: version + 1)
            }
            return self
        }
    }

    public private(set) var seats: [String: Seat] = [:]

    public init() {}

    /// Starts from an availability answer (or applies one later: newer seats win, as for events).
    public init(_ availability: Availability) {
        apply(availability)
    }

    public mutating func apply(_ availability: Availability) {
        for seat in availability.availability {
            update(seat.seatId, Seat(state: seat.state, version: seat.version, holdExpiresAt: seat.holdExpiresAt))
        }
    }

    /// Applies `event` to each seat it names whose version in `seatVersions` is newer than the map's.
    /// Returns the seats it changed (none for a duplicate or a stale event).
    @discardableResult
    public mutating func apply(_ event: InventoryEvent) -> [String] {
        var changed: [String] = []
        let state = event.seatState
        for seatID in event.seatIds {
            guard let version = event.seatVersions[seatID] else { continue }
            if update(
                seatID,
                Seat(state: state, version: version, holdExpiresAt: state == .held ? event.expiresAt : nil)
            ) {
                changed.append(seatID)
            }
        }
        return changed
    }

    /// The seat as it reads at `now` (available at version 0 if nothing named it yet).
    public func seat(_ seatID: String, at now: Date) -> Seat {
        (seats[seatID] ?? Seat(state: .available, version: 0)).reading(at: now)
    }

    @discardableResult
    private mutating func update(_ seatID: String, _ seat: Seat) -> Bool {
        if let current = seats[seatID], current.version >= seat.version { return false }
        seats[seatID] = seat
        return true
    }
}
