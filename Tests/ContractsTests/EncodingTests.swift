import Foundation
import Testing

@testable import Contracts

@Suite("Encoding")
struct EncodingTests {
    static let date = Date(timeIntervalSince1970: 1_767_269_100)  // 2026-01-01T12:05:00Z

    func text<T: Encodable>(_ value: T) throws -> String { String(decoding: try ContractJSON.encode(value), as: UTF8.self) }

    @Test("dates are RFC 3339 UTC, whole seconds; fractions and offsets are read")
    func dates() throws {
        #expect(ContractJSON.formatDate(Self.date) == "2026-01-01T12:05:00Z")
        #expect(ContractJSON.formatDate(Self.date.addingTimeInterval(0.999)) == "2026-01-01T12:05:00Z")
        #expect(ContractJSON.parseDate("2026-01-01T12:05:00Z") == Self.date)
        #expect(ContractJSON.parseDate("2026-01-01T12:05:00.250Z") == Self.date.addingTimeInterval(0.25))
        #expect(ContractJSON.parseDate("2026-01-01T14:05:00+02:00") == Self.date)
        for bad in ["2026-01-01", "yesterday", "", "2026-13-01T00:00:00Z", String(repeating: "9", count: 10_000)] {
            #expect(ContractJSON.parseDate(bad) == nil, "\(bad)")
        }
        let hold = Hold(holdId: "h", showtimeId: "s", userId: "u", seatIds: ["A1"], status: .active, expiresAt: Self.date)
        #expect(try text(hold) == #"{"expiresAt":"2026-01-01T12:05:00Z","holdId":"h","seatIds":["A1"],"showtimeId":"s","status":"active","userId":"u"}"#)
        let decoded = try ContractJSON.decode(Hold.self, from: Array(
            #"{"expiresAt":"2026-01-01T12:05:00.123456Z","holdId":"h","seatIds":["A1"],"showtimeId":"s","status":"active","userId":"u"}"#.utf8))
        #expect(abs(decoded.expiresAt.timeIntervalSince(Self.date) - 0.123456) < 0.001)
    }

    @Test("RPC replies are {ok: true, data} or {ok: false, error}")
    func replies() throws {
        #expect(try text(RPCReply.ok(PingReply())) == #"{"data":{"status":"ok"},"ok":true}"#)
        #expect(try text(RPCReply<PingReply>.error(.seatUnavailable(["A1"])))
            == #"{"error":{"code":"SEAT_UNAVAILABLE","details":{"seatIds":["A1"]},"message":"Seat unavailable"},"ok":false}"#)
        let failure = try ContractJSON.decode(RPCReply<Hold>.self, from: Array(
            #"{"ok":false,"error":{"code":"HOLD_NOT_FOUND","message":"no","details":{}}}"#.utf8))
        #expect(failure == .error(ErrorBody(code: .holdNotFound, message: "no", details: [:])))
        #expect(throws: (any Error).self) { try ContractJSON.decode(RPCReply<Hold>.self, from: Array(#"{"ok":true}"#.utf8)) }
    }

    @Test("the REST error body is {error: {code, message, details}} with details always an object")
    func restErrorBody() throws {
        let body = String(decoding: ErrorBody(code: .upstreamTimeout, message: "slow").restBody(), as: UTF8.self)
        #expect(body == #"{"error":{"code":"UPSTREAM_TIMEOUT","details":{},"message":"slow"}}"#)
    }

    @Test("events carry expiresAt on hold.created and orderId on seats.purchased only")
    func events() throws {
        let hold = Hold(holdId: "h", showtimeId: "s", userId: "u", seatIds: ["A1"], status: .purchased, expiresAt: Self.date, orderId: "o")
        let keys = { (type: EventType) in
            try SwiftCodec.reencode(InventoryEvent(eventId: "e", type: type, occurredAt: Self.date, hold: hold, seatVersions: ["A1": 1]))
                .objectKeys
        }
        #expect(try keys(.holdCreated).contains("expiresAt") && !keys(.holdCreated).contains("orderId"))
        #expect(try keys(.seatsPurchased).contains("orderId") && !keys(.seatsPurchased).contains("expiresAt"))
        #expect(try !keys(.holdReleased).contains("orderId") && !keys(.holdExpired).contains("expiresAt"))
    }

    @Test("what the Swift code encodes validates against the JSON Schemas")
    func swiftOutputMatchesSchemas() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("contracts-out-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var count = 0
        func write<T: Encodable>(_ schema: String, _ value: T) throws {
            let folder = dir.appendingPathComponent(schema)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            count += 1
            try Data(ContractJSON.encode(value)).write(to: folder.appendingPathComponent("\(count).json"))
        }
        let hold = Hold(holdId: "h", showtimeId: "s", userId: "u", seatIds: ["A1", "A2"], status: .active, expiresAt: Self.date)
        var purchased = hold
        purchased.status = .purchased
        purchased.orderId = "o"
        try write("hold", hold)
        try write("hold", purchased)
        try write("reply-hold", RPCReply.ok(purchased))
        for type in EventType.allCases {
            try write("event", InventoryEvent(eventId: "e-\(type.rawValue)", type: type, occurredAt: Self.date.addingTimeInterval(0.5),
                                              hold: type == .seatsPurchased ? purchased : hold, seatVersions: ["A1": 4, "A2": 7]))
        }
        // A hold.expired whose seats a newer hold took after its expiresAt names no seat.
        try write("event", InventoryEvent(eventId: "e-none", type: .holdExpired, occurredAt: Self.date, hold: hold, seatVersions: [:]))
        let seats = [SeatAvailability(seatId: "A1", state: .held, holdExpiresAt: Self.date, version: 9),
                     SeatAvailability(seatId: "A2", state: .available)]
        try write("availability", Availability(showtimeId: "s", availability: seats))
        try write("reply-availability", RPCReply.ok(Availability(showtimeId: "s", availability: [])))
        try write("reply-seats-defined", RPCReply.ok(SeatsDefined(showtimeId: "s", seatCount: 3, added: 1)))
        try write("reply-ping", RPCReply.ok(PingReply()))
        try write("error", ErrorBody.seatUnavailable(["A1"]))
        try write("error", ErrorBody.unknownSeats((1...20).map { "Z\($0)" }))
        try write("error", ErrorBody.seatLimitReached(limit: 10, held: 9))
        try write("reply-hold", RPCReply<Hold>.error(ErrorBody.seatLimitReached(limit: 4, held: 0)))
        try write("error", ErrorBody.requestTooLarge(size: 10 << 20, limit: 2 << 20))
        try write("error-body", RESTErrorBody(error: ErrorBody(code: .methodNotAllowed, message: "no")))
        // The VALIDATION_FAILED bodies of every invalid example, and of a body with too many problems.
        let index = try #require(Repo.json(Repo.examples.appendingPathComponent("invalid/index.json"))["examples"])
        for path in index.objectKeys.sorted() {
            let schema = try #require(index[path]?["schema"]?.string)
            if case .failure(let error)? = SwiftCodec.all[schema]?.validate?(try Repo.bytes(Repo.examples.appendingPathComponent("invalid/\(path)"))) {
                try write("error-body", RESTErrorBody(error: error))
                try write("reply-hold", RPCReply<Hold>.error(error))
            }
        }
        let many = (0..<200).map { "\($0)" }.joined(separator: ",")
        if case .failure(let error) = RequestDecoder.decode(SeatsDefineBody.self, from: Array(#"{"seatIds":[\#(many)]}"#.utf8), limits: .default) {
            try write("error", error)
        }
        let result = try Repo.run(["bash", "scripts/check-contracts.sh", "--validate", dir.path])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("\(count) documents checked, 0 problems"), "\(result.output)")
    }
}
