import AMQPClient
import Contracts
import Foundation
import HTTPServer
import Logging
import TestSupport
import Testing

@testable import InventoryRPC

/// The core's small pure parts, without services.
@Suite("Core units")
struct CoreUnitTests {
    @Test("x-deadline: integers, doubles and decimal strings are epoch milliseconds; anything else is invalid")
    func deadlines() {
        let now: Int64 = 1_700_000_000_000
        #expect(Deadline.check(nil, now: now) == Deadline.none)
        #expect(Deadline.check(.int(now + 1), now: now) == .pending(now + 1))
        #expect(Deadline.check(.int(now), now: now) == .passed(now))
        #expect(Deadline.check(.double(Double(now - 5)), now: now) == .passed(now - 5))
        #expect(Deadline.check(.string(" \(now + 10) "), now: now) == .pending(now + 10))
        #expect(Deadline.check(.string("soon"), now: now) == .invalid)
        #expect(Deadline.check(.bool(true), now: now) == .invalid)
        #expect(Deadline.check(.double(.infinity), now: now) == .invalid)
    }

    @Test("hold ids are hold_ and 32 hex digits, and do not repeat")
    func holdIDs() {
        let ids = (0..<1000).map { _ in RequestHandler.makeHoldID() }
        #expect(Set(ids).count == 1000)
        for id in ids {
            #expect(id.hasPrefix("hold_") && id.count == 37)
            #expect(id.dropFirst(5).allSatisfy { $0.isHexDigit && !$0.isUppercase })
            #expect(Identifier.isValid(id))
        }
    }

    @Test(
        "the Redis circuit: closed lets everyone through; open lets nobody through until one probe after the back-off"
    )
    func circuit() async throws {
        let circuit = RedisCircuit(
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
            metrics: ServiceMetrics(),
            maximumBackoff: .milliseconds(300)
        )
        #expect(circuit.permit() && circuit.permit())
        circuit.failed(TestFailure("refused"))
        #expect(circuit.isOpen)
        #expect(!circuit.permit())
        try await Task.sleep(for: .milliseconds(300))
        #expect(circuit.permit(), "one probe after the back-off")
        #expect(!circuit.permit(), "only one")
        circuit.failed(TestFailure("still refused"))
        #expect(!circuit.permit())
        try await Task.sleep(for: .milliseconds(350))
        #expect(circuit.permit())
        circuit.succeeded()
        #expect(!circuit.isOpen)
        #expect(circuit.permit() && circuit.permit())
    }

    @Test("lock and marker keys keep the showtime (or user) as a Redis Cluster hash tag")
    func keys() {
        #expect(SeatLocks.lockKey(showtimeID: "showtime_123", seatID: "seat_1") == "lock:{showtime_123}:seat_1")
        #expect(SeatLocks.markerKey(userID: "user_456", key: "k-1") == "idem:{user_456}:k-1")
    }

    @Test("replies: ok with data, errors with code, message and details; replays are marked")
    func replies() throws {
        let hold = Hold(
            holdId: "hold_1",
            showtimeId: "s",
            userId: "u",
            seatIds: ["a"],
            status: .active,
            expiresAt: Date(timeIntervalSince1970: 1_767_225_900)
        )
        let created = RequestHandler.reply(.created(hold))
        #expect(!created.replayed && created.outcome == "ok")
        let replayed = RequestHandler.reply(.replayed(hold))
        #expect(replayed.replayed && replayed.body == created.body)
        let json = try #require(String(bytes: created.body, encoding: .utf8))
        #expect(json.contains(#""ok":true"#) && json.contains(#""expiresAt":"2026-01-01T00:05:00Z""#))
        let unavailable = RequestHandler.reply(.unavailable(seatIDs: ["a", "b"]))
        #expect(unavailable.outcome == "SEAT_UNAVAILABLE")
        let decoded = try ContractJSON.decode(RPCReply<Hold>.self, from: unavailable.body)
        guard case .error(let error) = decoded else {
            Issue.record("expected an error reply")
            return
        }
        #expect(error.details?["seatIds"] == .array(["a", "b"]))
        #expect(RequestHandler.reply(.keyReused).outcome == "IDEMPOTENCY_KEY_REUSED")
        #expect(RequestHandler.reply(.showtimeNotFound).outcome == "SHOWTIME_NOT_FOUND")
        #expect(RequestHandler.reply(.unknownSeats(["x"])).outcome == "UNKNOWN_SEATS")
    }
    @Test("ops routes: /readyz is 503 until one worker has both the database and the broker; 404, 405")
    func opsRoutes() {
        let health = CoreHealth()
        func get(_ path: String, method: String = "GET") -> HTTPResponse {
            CoreService.opsResponse(
                HTTPRequest(method: method, path: path, query: [:], headers: [:], body: [], bodyTooLarge: false),
                health: health,
                exposition: { Array("metric 1\n".utf8) }
            )
        }
        #expect(get("/healthz").status == 200)
        #expect(get("/readyz").status == 503)
        health.reportUp(.database, owner: "w0")
        health.reportUp(.broker, owner: "w1")
        #expect(get("/readyz").status == 503, "no single worker has both")
        health.reportUp(.broker, owner: "w0")
        #expect(get("/readyz").status == 200)
        health.reportDown(.database, owner: "w0")
        #expect(get("/readyz").status == 503)
        #expect(get("/metrics").body == Array("metric 1\n".utf8))
        #expect(get("/nope").status == 404)
        #expect(get("/metrics", method: "POST").status == 405)
    }
}
