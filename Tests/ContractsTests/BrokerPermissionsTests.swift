import Testing

@testable import Contracts

@Suite("Broker permissions: the core's table of who may call what")
struct BrokerPermissionsTests {
    typealias Users = BrokerPermissions.Users

    @Test(
        "the default table is INTERFACE.md's: facade and admin everything, Orders the hold life cycle, gateway availability and ping"
    )
    func defaultTable() {
        let table = BrokerPermissions.default
        let all = Set(RPCOperation.allCases)
        #expect(table.grants[Users.facade] == .init(operations: all, actsForUsers: true, admin: true))
        #expect(table.grants[Users.admin] == .init(operations: all, actsForUsers: true, admin: true))
        #expect(
            table.grants[Users.orders]
                == .init(
                    operations: [.hold, .release, .purchase, .holdGet, .availability, .ping, .holdExtend],
                    actsForUsers: true
                )
        )
        #expect(table.grants[Users.gateway] == .init(operations: [.availability, .ping]))
        #expect(table.grants[Users.core] == nil)
        #expect(table.grants["guest"] == nil)
        #expect(!table.grantsGuest)
    }

    @Test("the table's text parses back to the same table, and RPC_PERMISSIONS can grant guest")
    func roundTrip() throws {
        let text = BrokerPermissions.default.description
        #expect(
            text
                == "inventory-admin=*,act-for-users,admin inventory-facade=*,act-for-users,admin "
                + "inventory-gateway=availability,ping "
                + "inventory-orders=hold,release,purchase,hold.get,availability,ping,hold.extend,act-for-users"
        )
        #expect(try BrokerPermissions.parse(text).get() == .default)
        let withGuest = try BrokerPermissions.parse("guest=*;ops=hold.get,seats.define,admin").get()
        #expect(withGuest.grantsGuest)
        #expect(withGuest.grants["ops"] == .init(operations: [.holdGet, .seatsDefine], admin: true))
    }

    @Test(
        "a bad table is refused with a message naming the problem",
        arguments: [
            ("", "at least one"),
            ("inventory-facade", "user=operations"),
            ("=hold", "user=operations"),
            ("a=hold a=ping", "twice"),
            ("a=hold,purchases", "unknown item 'purchases'"),
        ]
    )
    func badTables(text: String, problem: String) {
        guard case .failure(let error) = BrokerPermissions.parse(text) else {
            Issue.record("\(text) parsed")
            return
        }
        #expect(error.description.contains(problem), "\(error)")
    }

    @Test("an operation the broker user lacks, a missing user_id or an unknown user: FORBIDDEN, before the body")
    func operationRefusals() {
        let table = BrokerPermissions.default
        for (user, operation) in [
            (Users.gateway, RPCOperation.purchase), (Users.gateway, .hold), (Users.orders, .seatsDefine),
            (Users.core, .ping), ("guest", .availability),
        ] {
            #expect(
                BrokerAuthorization.check(operation, brokerUser: user, userId: "u1", permissions: table)?.code
                    == .forbidden,
                "\(user) \(operation)"
            )
        }
        #expect(BrokerAuthorization.check(.ping, brokerUser: nil, userId: nil, permissions: table)?.code == .forbidden)
        #expect(
            BrokerAuthorization.check(.availability, brokerUser: Users.gateway, userId: nil, permissions: table) == nil
        )
    }

    @Test("userId: required of non-admins for release, purchase and hold.get; an admin may leave it out")
    func userRules() {
        let table = BrokerPermissions.default
        for operation in [RPCOperation.release, .purchase, .holdGet] {
            let refusal = BrokerAuthorization.check(
                operation,
                brokerUser: Users.orders,
                userId: nil,
                permissions: table
            )
            #expect(refusal?.code == .validationFailed)
            #expect(refusal?.details?["field"] == .string("userId"))
            #expect(
                BrokerAuthorization.check(operation, brokerUser: Users.facade, userId: nil, permissions: table) == nil
            )
            #expect(
                BrokerAuthorization.check(operation, brokerUser: Users.admin, userId: nil, permissions: table) == nil
            )
            #expect(
                BrokerAuthorization.check(operation, brokerUser: Users.orders, userId: "u1", permissions: table) == nil
            )
        }
    }

    @Test("a broker user that does not act for end users may name only itself as userId")
    func selfOnly() throws {
        let table = try BrokerPermissions.parse("kiosk=hold,release").get()
        #expect(BrokerAuthorization.check(.hold, brokerUser: "kiosk", userId: "kiosk", permissions: table) == nil)
        let other = BrokerAuthorization.check(.release, brokerUser: "kiosk", userId: "alice", permissions: table)
        #expect(other?.code == .forbidden)
        #expect(other?.details?["field"] == .string("userId"))
    }
}
