import Contracts
import Foundation

/// One RabbitMQ user per service, of this test's own, on its vhost: made by `scripts/services.sh
/// broker-user` (so with exactly the permissions the script gives the real users), named `t<id>-core`,
/// `t<id>-facade`, ... so that parallel tests (and worktrees) never change each other's passwords, and
/// deleted afterwards. The core's table is INTERFACE.md's default with these names.
struct TestBrokerUsers: Sendable {
    enum Service: String, CaseIterable, Sendable {
        case core, facade, orders, gateway, admin

        /// The role `scripts/services.sh` gives the service's user.
        var brokerRole: String {
            switch self {
            case .core: "core"
            case .gateway: "consumer"
            case .facade, .orders, .admin: "caller"
            }
        }

        /// The name of the real service user, as in the default table.
        var realName: String {
            switch self {
            case .core: BrokerPermissions.Users.core
            case .facade: BrokerPermissions.Users.facade
            case .orders: BrokerPermissions.Users.orders
            case .gateway: BrokerPermissions.Users.gateway
            case .admin: BrokerPermissions.Users.admin
            }
        }
    }

    let prefix: String
    let vhost: String
    let passwords: [Service: String]

    static var servicesScript: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/services.sh").path
    }

    static func create(vhost: String) throws -> TestBrokerUsers {
        let prefix = "t\(uniqueID())"
        var passwords: [Service: String] = [:]
        for service in Service.allCases {
            let password = uniqueID() + uniqueID()
            let user = "\(prefix)-\(service.rawValue)"
            let output = try runProcess(
                "/bin/bash",
                [servicesScript, "broker-user", user, password, service.brokerRole, vhost]
            )
            guard output.status == 0 else { throw FixtureError("services.sh broker-user \(user): \(output.text)") }
            passwords[service] = password
        }
        return TestBrokerUsers(prefix: prefix, vhost: vhost, passwords: passwords)
    }

    func user(_ service: Service) -> String { "\(prefix)-\(service.rawValue)" }

    func url(_ service: Service) -> String {
        "amqp://\(user(service)):\(passwords[service]!)@localhost:5672/\(vhost)"
    }

    /// INTERFACE.md's default table, for this test's users (and `guest` as an admin, for the harness's
    /// own client).
    var permissions: BrokerPermissions {
        var grants: [String: BrokerPermissions.Grant] = [:]
        for service in Service.allCases {
            if let grant = BrokerPermissions.default.grants[service.realName] { grants[user(service)] = grant }
        }
        grants["guest"] = BrokerPermissions.Grant(
            operations: Set(RPCOperation.allCases),
            actsForUsers: true,
            admin: true
        )
        return BrokerPermissions(grants: grants)
    }

    func delete() {
        for service in Service.allCases {
            _ = try? runProcess("/usr/sbin/rabbitmqctl", ["-q", "delete_user", user(service)])
        }
    }
}
