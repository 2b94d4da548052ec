// TEMPORARY: stands in for core-storage's InventoryStore until that branch lands; deleted on merge.
import Contracts
import Logging
import PostgresClient

public enum HoldOutcome: Sendable {
    case created(Hold), replayed(Hold), unavailable(seatIDs: [String]), unknownSeats([String]), showtimeNotFound, keyReused
}
public struct ExpiredHold: Sendable { public var holdID, showtimeID: String; public var seatIDs: [String] }
public struct OutboxEvent: Sendable {
    public var id: Int64; public var eventID: String; public var holdID: String; public var type: String
    public var payload: [UInt8]
}
public final class InventoryStore {
    public init(connection: PostgresConnection) throws { fatalError() }
    public func hold(holdID: String, request: HoldRequest, ttlSeconds: Int) throws -> HoldOutcome { fatalError() }
    public func findIdempotentHold(userID: String, key: String, request: HoldRequest) throws -> HoldOutcome? { fatalError() }
    public func release(_ request: ReleaseRequest) throws -> Result<Hold, ErrorBody> { fatalError() }
    public func purchase(_ request: PurchaseRequest) throws -> Result<Hold, ErrorBody> { fatalError() }
    public func hold(id: String) throws -> Result<Hold, ErrorBody> { fatalError() }
    public func availability(showtimeID: String) throws -> Result<Availability, ErrorBody> { fatalError() }
    public func defineSeats(_ request: SeatsDefineRequest) throws -> SeatsDefined { fatalError() }
    public func expireDueHolds(batchSize: Int) throws -> [ExpiredHold] { fatalError() }
    public func unpublishedEvents(limit: Int) throws -> [OutboxEvent] { fatalError() }
    public func markPublished(ids: [Int64]) throws { fatalError() }
}
public enum Migrator { public static func migrate(_ connection: PostgresConnection, logger: Logger) throws -> [Int] { fatalError() } }
