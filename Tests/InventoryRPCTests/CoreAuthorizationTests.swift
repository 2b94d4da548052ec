import AMQPClient
import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

extension CoreServiceTests {
    /// Rule 7 over AMQP: the core authorizes every request by its broker user (the AMQP `user_id`, which
    /// RabbitMQ checks against the login) and checks the hold's owner in the transaction that acts; the
    /// broker's permissions keep everyone but the core off `inventory.events`. The core and every client
    /// run as the test's own service users, made by `scripts/services.sh broker-user`.
    @Suite("Core authorization by broker user and hold owner")
    struct CoreAuthorizationTests {
        /// Everything a refused request could have changed: holds, seats, events written.
        static func databaseState(_ core: CoreHarness) throws -> String {
            let rows = try core.query(
                """
                SELECT (SELECT coalesce(string_agg(hold_id || ':' || status || ':' || coalesce(order_id, '-')
                                                   || ':' || user_id, ',' ORDER BY hold_id), '') FROM holds)
                       || '|' || (SELECT coalesce(string_agg(showtime_id || '/' || seat_id || ':' || state || ':'
                                                             || coalesce(hold_id, '-'), ',' ORDER BY showtime_id, seat_id), '')
                                  FROM seat_states)
                       || '|' || (SELECT count(*)::text FROM outbox) AS state
                """
            )
            return try rows[0].decode("state", as: String.self)
        }

        static func client(_ core: CoreHarness, _ service: TestBrokerUsers.Service) throws -> RPCTestClient {
            try RPCTestClient(url: try #require(core.users).url(service))
        }

        @Test(
            "user B cannot release, purchase or read user A's hold (HOLD_NOT_OWNED), nothing changes; an admin broker user releases it"
        )
        func ownership() async throws {
            try await withCore(workers: 2, serviceUsers: true) { core in
                let facade = try Self.client(core, .facade)
                defer { facade.close() }
                let orders = try Self.client(core, .orders)
                defer { orders.close() }
                let admin = try Self.client(core, .admin)
                defer { admin.close() }

                let showtimeID = try await core.showtime(seats: 4)
                let created = try await facade.call(
                    .hold,
                    HoldRequest(showtimeId: showtimeID, seatIds: ["s1", "s2"], userId: "alice")
                )
                let hold = try created.decode(Hold.self).result.get()
                let before = try Self.databaseState(core)

                let release = try await facade.call(.release, ReleaseRequest(holdId: hold.holdId, userId: "bob"))
                #expect(release.errorCode == .holdNotOwned)
                let purchase = try await orders.call(
                    .purchase,
                    PurchaseRequest(holdId: hold.holdId, orderId: "order-bob", userId: "bob")
                )
                #expect(purchase.errorCode == .holdNotOwned)
                let read = try await facade.call(.holdGet, HoldGetRequest(holdId: hold.holdId, userId: "bob"))
                #expect(read.errorCode == .holdNotOwned)
                #expect(!String(decoding: read.body, as: UTF8.self).contains("alice"))
                let readByOrders = try await orders.call(.holdGet, HoldGetRequest(holdId: hold.holdId, userId: "bob"))
                #expect(readByOrders.errorCode == .holdNotOwned)

                // A non-admin broker user must name the user: leaving it out is not an admin act for it.
                for (operation, body) in [
                    (RPCOperation.release, try ContractJSON.encode(ReleaseRequest(holdId: hold.holdId))),
                    (.purchase, try ContractJSON.encode(PurchaseRequest(holdId: hold.holdId, orderId: "order-x"))),
                    (.holdGet, try ContractJSON.encode(HoldGetRequest(holdId: hold.holdId))),
                ] {
                    let answer = try await orders.call(operation, body: body)
                    #expect(answer.errorCode == .validationFailed, "\(operation)")
                    #expect(answer.error?.details?["field"] == .string("userId"), "\(operation)")
                }
                #expect(try Self.databaseState(core) == before)

                // The owner reads it; an admin broker user reads and releases it without naming anyone.
                let own = try await orders.call(.holdGet, HoldGetRequest(holdId: hold.holdId, userId: "alice"))
                #expect(try own.decode(Hold.self).result.get().status == .active)
                let adminRead = try await admin.call(.holdGet, HoldGetRequest(holdId: hold.holdId))
                #expect(try adminRead.decode(Hold.self).result.get().userId == "alice")
                let released = try await admin.call(.release, ReleaseRequest(holdId: hold.holdId))
                #expect(try released.decode(Hold.self).result.get().status == .released)
                let seats = try core.query(
                    "SELECT count(*)::text AS n FROM seat_states WHERE showtime_id = $1 AND state = 'available'",
                    [showtimeID]
                )
                #expect(seats.first?["n"] == "4")
            }
        }

        @Test(
            "the gateway's broker user may ask for availability only: its purchase, hold, release and seat map are FORBIDDEN; the Orders Service's seat map too"
        )
        func operationsPerBrokerUser() async throws {
            try await withCore(workers: 2, serviceUsers: true) { core in
                let gateway = try Self.client(core, .gateway)
                defer { gateway.close() }
                let orders = try Self.client(core, .orders)
                defer { orders.close() }
                let facade = try Self.client(core, .facade)
                defer { facade.close() }

                let showtimeID = try await core.showtime(seats: 3)
                let hold = try await facade.call(
                    .hold,
                    HoldRequest(showtimeId: showtimeID, seatIds: ["s1"], userId: "alice")
                ).decode(Hold.self).result.get()
                let before = try Self.databaseState(core)

                let refused: [(RPCTestClient, RPCOperation, [UInt8])] = [
                    (
                        gateway, .purchase,
                        try ContractJSON.encode(PurchaseRequest(holdId: hold.holdId, orderId: "o1", userId: "alice"))
                    ),
                    (
                        gateway, .hold,
                        try ContractJSON.encode(HoldRequest(showtimeId: showtimeID, seatIds: ["s2"], userId: "alice"))
                    ),
                    (gateway, .release, try ContractJSON.encode(ReleaseRequest(holdId: hold.holdId, userId: "alice"))),
                    (gateway, .holdGet, try ContractJSON.encode(HoldGetRequest(holdId: hold.holdId, userId: "alice"))),
                    (
                        gateway, .seatsDefine,
                        try ContractJSON.encode(SeatsDefineRequest(showtimeId: showtimeID, seatIds: ["s9"]))
                    ),
                    (
                        orders, .seatsDefine,
                        try ContractJSON.encode(SeatsDefineRequest(showtimeId: showtimeID, seatIds: ["s9"]))
                    ),
                    // Not JSON at all: refused for the operation before the body is read.
                    (gateway, .hold, Array("not json".utf8)),
                ]
                for (client, operation, body) in refused {
                    let answer = try await client.call(operation, body: body)
                    #expect(answer.errorCode == .forbidden, "\(operation)")
                    #expect(answer.error?.details?["operation"] == .string(operation.routingKey))
                }
                #expect(try Self.databaseState(core) == before)

                let availability = try await gateway.call(.availability, AvailabilityRequest(showtimeId: showtimeID))
                #expect(try availability.decode(Availability.self).result.get().summary.held == 1)
                #expect(try await gateway.call(.ping, PingRequest()).errorCode == nil)
            }
        }

        @Test(
            "a request without user_id, or from a broker user the table does not name (the core's own), is FORBIDDEN and changes nothing"
        )
        func unknownCallers() async throws {
            try await withCore(workers: 2, serviceUsers: true) { core in
                let users = try #require(core.users)
                let coreUser = try Self.client(core, .core)
                defer { coreUser.close() }
                let showtimeID = try await core.showtime(seats: 2)
                let before = try Self.databaseState(core)
                let hold = try ContractJSON.encode(HoldRequest(showtimeId: showtimeID, seatIds: ["s1"], userId: "alice"))
                let define = try ContractJSON.encode(SeatsDefineRequest(showtimeId: showtimeID, seatIds: ["s7"]))
                for (operation, body) in [(RPCOperation.hold, hold), (.seatsDefine, define)] {
                    // The core's own broker user: named in no table entry.
                    #expect(try await coreUser.call(operation, body: body).errorCode == .forbidden, "\(operation)")
                    // No user_id at all (every RPC client sets it; this one is written by hand).
                    let reply = try await blocking {
                        try Self.callWithoutUserID(url: users.url(.facade), operation, body: body)
                    }
                    let error = try ContractJSON.decode(RPCReply<JSONValue>.self, from: reply)
                    guard case .error(let refusal) = error else {
                        Issue.record("\(operation) without user_id answered ok")
                        continue
                    }
                    #expect(refusal.code == .forbidden, "\(operation)")
                }
                #expect(try Self.databaseState(core) == before)
            }
        }

        /// One request published without `user_id`, over a connection of its own; the reply's body.
        static func callWithoutUserID(url: String, _ operation: RPCOperation, body: [UInt8]) throws -> [UInt8] {
            let connection = try AMQPConnection(configuration: try AMQPConfiguration(url: url), logger: testLogger)
            defer { connection.close() }
            try connection.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            try connection.publish(
                exchange: RPCOperation.exchange,
                routingKey: operation.routingKey,
                body: body,
                properties: AMQPProperties(
                    contentType: "application/json",
                    correlationID: "anonymous",
                    replyTo: "amq.rabbitmq.reply-to"
                )
            )
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if case .delivery(let message)? = try connection.nextEvent(timeout: .milliseconds(200)),
                    message.properties.correlationID == "anonymous"
                {
                    return message.body
                }
            }
            throw TestFailure("no reply to \(operation.routingKey) without user_id")
        }

        @Test(
            "the broker refuses a publish to inventory.events by the gateway's, the facade's or the Orders Service's user (403 ACCESS_REFUSED); no such event arrives"
        )
        func onlyTheCorePublishesEvents() async throws {
            try await withCore(workers: 2, serviceUsers: true) { core in
                let users = try #require(core.users)
                let showtimeID = try await core.showtime(seats: 2)
                let forgedIDs = [TestBrokerUsers.Service.gateway, .facade, .orders, .admin].map { "forged-\($0)" }
                for (service, forgedID) in zip([TestBrokerUsers.Service.gateway, .facade, .orders, .admin], forgedIDs) {
                    let connection = try AMQPConnection(
                        configuration: try AMQPConfiguration(url: users.url(service)),
                        logger: testLogger
                    )
                    defer { connection.close() }
                    let fake =
                        #"{"eventId":"\#(forgedID)","type":"hold.expired","occurredAt":"2026-01-01T12:00:00Z","showtimeId":"\#(showtimeID)","holdId":"hold_x","userId":"u","seatIds":["s1"]}"#
                    try connection.publish(
                        exchange: EventType.exchange,
                        routingKey: "hold.expired",
                        body: Array(fake.utf8),
                        properties: AMQPProperties(
                            contentType: "application/json",
                            messageID: forgedID,
                            persistent: true,
                            userID: users.user(service)
                        )
                    )
                    // The refusal closes the channel; it shows at the next synchronous call.
                    let error = #expect(throws: AMQPError.self) {
                        try connection.declareExchange(EventType.exchange, type: .topic, passive: true)
                    }
                    #expect(error?.replyCode == 403, "\(service): \(String(describing: error))")
                    #expect(error?.message.contains("ACCESS_REFUSED") == true, "\(service)")
                }
                // A real event published after the refusals arrives; none of the forged ones did.
                let facade = try Self.client(core, .facade)
                defer { facade.close() }
                let hold = try await facade.call(
                    .hold,
                    HoldRequest(showtimeId: showtimeID, seatIds: ["s2"], userId: "alice")
                ).decode(Hold.self).result.get()
                #expect(await core.events.wait { $0.contains { $0.holdId == hold.holdId } })
                #expect(!core.events.all.contains { forgedIDs.contains($0.eventId) })
                #expect(core.events.all.allSatisfy { $0.showtimeId != showtimeID || $0.holdId == hold.holdId })
            }
        }

        @Test(
            "a request whose user_id is not its connection's login is refused by the broker; the core never acts on it"
        )
        func forgedUserID() async throws {
            try await withCore(workers: 2, serviceUsers: true) { core in
                let users = try #require(core.users)
                let showtimeID = try await core.showtime(seats: 2)
                let before = try Self.databaseState(core)
                // The gateway's user, claiming to be the admin's, asks for a seat map change.
                let connection = try AMQPConnection(
                    configuration: try AMQPConfiguration(url: users.url(.gateway)),
                    logger: testLogger
                )
                defer { connection.close() }
                try connection.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
                try connection.publish(
                    exchange: RPCOperation.exchange,
                    routingKey: RPCOperation.seatsDefine.routingKey,
                    body: try ContractJSON.encode(SeatsDefineRequest(showtimeId: showtimeID, seatIds: ["s8"])),
                    properties: AMQPProperties(
                        contentType: "application/json",
                        correlationID: "forged",
                        replyTo: "amq.rabbitmq.reply-to",
                        userID: users.user(.admin)
                    )
                )
                let error = #expect(throws: AMQPError.self) {
                    while try connection.nextEvent(timeout: .seconds(2)) != nil {}
                    try connection.declareExchange(RPCOperation.exchange, type: .direct, passive: true)
                }
                #expect(error?.replyCode == 406, "\(String(describing: error))")
                // The broker dropped it: the seat map and everything else are as before.
                let admin = try Self.client(core, .admin)
                defer { admin.close() }
                let availability = try await admin.call(.availability, AvailabilityRequest(showtimeId: showtimeID))
                #expect(
                    try availability.decode(Availability.self).result.get().availability.map(\.seatId) == ["s1", "s2"]
                )
                #expect(try Self.databaseState(core) == before)
            }
        }
    }
}
