import Contracts
import Foundation
import PostgresClient

@testable import InventoryRPC

/// A store on its own connection to a test database.
final class StoreFixture {
    let connection: PostgresConnection
    let store: InventoryStore

    init(_ url: String) throws {
        connection = try TestDatabase.connect(url)
        store = try InventoryStore(connection: connection)
    }

    deinit { connection.close() }

    static func newHoldID() -> String { "hold_" + UUID().uuidString.lowercased() }

    func define(_ showtimeID: String, _ seatIDs: [String]) throws {
        _ = try store.defineSeats(SeatsDefineRequest(showtimeId: showtimeID, seatIds: seatIDs))
    }

    func hold(
        _ showtimeID: String,
        _ seatIDs: [String],
        user: String = "user_1",
        key: String? = nil,
        ttl: Int = 300,
        holdID: String = StoreFixture.newHoldID()
    ) throws -> HoldOutcome {
        try store.hold(
            holdID: holdID,
            request: HoldRequest(showtimeId: showtimeID, seatIds: seatIDs, userId: user, idempotencyKey: key),
            ttlSeconds: ttl
        )
    }

    /// The created hold, or nil for any other outcome.
    func created(_ showtimeID: String, _ seatIDs: [String], user: String = "user_1", ttl: Int = 300) throws -> Hold? {
        if case .created(let hold) = try hold(showtimeID, seatIDs, user: user, ttl: ttl) { return hold }
        return nil
    }

    func int(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> Int {
        try connection.query(sql, parameters).rows[0].decode("n", as: Int.self)
    }
}

extension HoldOutcome {
    var createdHold: Hold? { if case .created(let hold) = self { hold } else { nil } }
    var replayedHold: Hold? { if case .replayed(let hold) = self { hold } else { nil } }
    var unavailableSeats: [String]? { if case .unavailable(let seats) = self { seats } else { nil } }
    var unknown: [String]? { if case .unknownSeats(let seats) = self { seats } else { nil } }
    var isShowtimeNotFound: Bool { if case .showtimeNotFound = self { true } else { false } }
    var isKeyReused: Bool { if case .keyReused = self { true } else { false } }
}

extension Result where Failure == ErrorBody {
    var errorCode: ErrorCode? { if case .failure(let error) = self { error.code } else { nil } }
    var value: Success? { try? get() }
}
