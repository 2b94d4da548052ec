import Contracts
import Foundation

/// The core's broker table for tests whose clients log in as `guest`: INTERFACE.md's default plus
/// `guest` with an admin's rights (the core warns at start), as `RPC_PERMISSIONS` text.
public let permissionsWithGuest = "\(BrokerPermissions.default) guest=*,act-for-users,admin"

/// One RabbitMQ user per service, of the test's own, on its scratch vhost: made by `scripts/services.sh
/// broker-user` (so with exactly the permissions the script gives the real users), named `t<id>-core`,
/// `t<id>-facade`, ..., so that parallel tests (and worktrees) never change each other's passwords; removed
/// by `delete()`. `permissions` is INTERFACE.md's default table with these names.
public struct TestBrokerUsers: Sendable {
    public enum Service: String, CaseIterable, Sendable {
        case core, facade, orders, gateway, admin

        /// The role `scripts/services.sh` gives the service's user.
        public var brokerRole: String {
            switch self {
            case .core: "core"
            case .gateway: "consumer"
            case .facade, .orders, .admin: "caller"
            }
        }

        /// The name of the real service user, as in the default table.
        public var realName: String {
            switch self {
            case .core: BrokerPermissions.Users.core
            case .facade: BrokerPermissions.Users.facade
            case .orders: BrokerPermissions.Users.orders
            case .gateway: BrokerPermissions.Users.gateway
            case .admin: BrokerPermissions.Users.admin
            }
        }
    }

    public let prefix: String
    public let vhost: String
    private let passwords: [Service: String]

    /// `scripts/services.sh` of this checkout.
    public static var servicesScript: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/services.sh").path
    }

    /// Makes the users of `services` on `vhost` (blocks a few seconds: one rabbitmqctl run per user and
    /// step; from async code, call it through `blocking`).
    public static func create(vhost: String, services: [Service] = Service.allCases) throws -> TestBrokerUsers {
        let prefix = "t\(uniqueID())"
        var passwords: [Service: String] = [:]
        for service in services {
            let password = uniqueID() + uniqueID()
            let user = "\(prefix)-\(service.rawValue)"
            let (status, output) = try runProcess(
                "/bin/bash",
                [servicesScript, "broker-user", user, password, service.brokerRole, vhost]
            )
            guard status == 0 else { throw TestFailure("services.sh broker-user \(user): \(output)") }
            passwords[service] = password
        }
        return TestBrokerUsers(prefix: prefix, vhost: vhost, passwords: passwords)
    }

    public func user(_ service: Service) -> String { "\(prefix)-\(service.rawValue)" }

    public func url(_ service: Service) -> String {
        let base = RabbitMQ.baseURL.replacingOccurrences(of: "guest:guest@", with: "")
        let withUser = base.replacingOccurrences(of: "amqp://", with: "amqp://\(user(service)):\(passwords[service]!)@")
        return "\(withUser)/\(vhost)"
    }

    /// INTERFACE.md's default table for these users, and `guest` with an admin's rights (for a harness's
    /// own client).
    public var permissions: BrokerPermissions {
        var grants: [String: BrokerPermissions.Grant] = [:]
        for service in passwords.keys {
            if let grant = BrokerPermissions.default.grants[service.realName] { grants[user(service)] = grant }
        }
        grants["guest"] = .init(operations: Set(RPCOperation.allCases), actsForUsers: true, admin: true)
        return BrokerPermissions(grants: grants)
    }

    public func delete() {
        for service in passwords.keys { _ = try? RabbitMQ.ctl(["delete_user", user(service)]) }
    }
}
