/// Which broker user may call which RPC operation (INTERFACE.md, "Who may do what"): the core's
/// authorization table, keyed by the AMQP `user_id` property, which RabbitMQ itself checks against the
/// connection's login.
///
/// Written as `RPC_PERMISSIONS`: entries separated by spaces or `;`, each `user=item,item,...`, where an
/// item is an operation (`hold`, `release`, `purchase`, `hold.get`, `availability`, `seats.define`,
/// `ping`, `hold.extend`, `seat.history`: the routing key without `.request`), `*` for every operation, or one
/// of two rights:
///
/// - `act-for-users`: the core believes the body's `userId` (the facade, the Orders Service, an admin).
///   A caller without it may only name itself as `userId`.
/// - `admin`: may leave `userId` out of `release`, `purchase`, `hold.get` and `hold.extend` (an admin act:
///   any hold).
///
/// Users not in the table may call nothing. ``default`` is INTERFACE.md's table.
public struct BrokerPermissions: Sendable, Equatable, CustomStringConvertible {
    /// What one broker user may do.
    public struct Grant: Sendable, Equatable {
        public var operations: Set<RPCOperation>
        /// Its body `userId` is trusted (it acts for end users it authenticated itself).
        public var actsForUsers: Bool
        /// A request without `userId` is an admin act it may do.
        public var admin: Bool

        public init(operations: Set<RPCOperation>, actsForUsers: Bool = false, admin: Bool = false) {
            self.operations = operations
            self.actsForUsers = actsForUsers
            self.admin = admin
        }
    }

    public var grants: [String: Grant]

    public init(grants: [String: Grant]) { self.grants = grants }

    /// The broker users `scripts/services.sh` creates.
    public enum Users {
        public static let core = "inventory-core"
        public static let facade = "inventory-facade"
        public static let orders = "inventory-orders"
        public static let gateway = "inventory-gateway"
        public static let admin = "inventory-admin"
    }

    /// INTERFACE.md's default: facade and admin every operation (and admin acts), the Orders Service the
    /// hold life cycle, the gateway availability and ping. `guest` is in no default.
    public static let `default`: BrokerPermissions = {
        let all = Set(RPCOperation.allCases)
        return BrokerPermissions(grants: [
            Users.facade: Grant(operations: all, actsForUsers: true, admin: true),
            Users.orders: Grant(
                operations: [.hold, .release, .purchase, .holdGet, .availability, .ping, .holdExtend],
                actsForUsers: true
            ),
            Users.gateway: Grant(operations: [.availability, .ping]),
            Users.admin: Grant(operations: all, actsForUsers: true, admin: true),
        ])
    }()

    /// The grant of `user`, nil when the table does not name it (or the request carried no `user_id`).
    public func grant(for user: String?) -> Grant? {
        guard let user else { return nil }
        return grants[user]
    }

    /// Whether the table grants anything to `guest`, the well-known default broker account whose password
    /// everyone knows: the core warns at start when it does.
    public var grantsGuest: Bool { !(grants["guest"]?.operations.isEmpty ?? true) }

    // MARK: The RPC_PERMISSIONS text

    public static let actsForUsersItem = "act-for-users"
    public static let adminItem = "admin"

    /// The operation's name in the table: its routing key without `.request`.
    public static func name(of operation: RPCOperation) -> String {
        String(operation.routingKey.dropLast(".request".count))
    }

    /// Parses the `RPC_PERMISSIONS` text; the error message says what is wrong (never a password: the
    /// text holds none).
    public static func parse(_ text: String) -> Result<BrokerPermissions, ParseError> {
        var grants: [String: Grant] = [:]
        let entries = text.split(whereSeparator: { $0 == " " || $0 == ";" || $0 == "\n" || $0 == "\t" })
        guard !entries.isEmpty else { return .failure(ParseError("expected at least one user=operations entry")) }
        let byName = Dictionary(uniqueKeysWithValues: RPCOperation.allCases.map { (name(of: $0), $0) })
        for entry in entries {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                return .failure(ParseError("expected user=operations, got '\(entry)'"))
            }
            let user = String(parts[0])
            guard grants[user] == nil else { return .failure(ParseError("user '\(user)' is listed twice")) }
            var grant = Grant(operations: [])
            for item in parts[1].split(separator: ",") {
                switch item {
                case "*": grant.operations.formUnion(RPCOperation.allCases)
                case Substring(actsForUsersItem): grant.actsForUsers = true
                case Substring(adminItem): grant.admin = true
                default:
                    guard let operation = byName[String(item)] else {
                        let known = (RPCOperation.allCases.map(name(of:)) + ["*", actsForUsersItem, adminItem])
                        return .failure(
                            ParseError(
                                "unknown item '\(item)' for user '\(user)'; expected \(known.joined(separator: ", "))"
                            )
                        )
                    }
                    grant.operations.insert(operation)
                }
            }
            grants[user] = grant
        }
        return .success(BrokerPermissions(grants: grants))
    }

    /// The table in `RPC_PERMISSIONS` form, users sorted: `parse(description)` gives it back.
    public var description: String {
        grants.keys.sorted().map { user in
            let grant = grants[user]!
            var items: [String] =
                grant.operations.count == RPCOperation.allCases.count
                ? ["*"] : RPCOperation.allCases.filter(grant.operations.contains).map(Self.name(of:))
            if grant.actsForUsers { items.append(Self.actsForUsersItem) }
            if grant.admin { items.append(Self.adminItem) }
            return "\(user)=\(items.joined(separator: ","))"
        }.joined(separator: " ")
    }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }
}

/// The core's decision on one request, before it acts (pure: tested without a broker). Two steps: the
/// operation (`FORBIDDEN` before the body is read, so a caller without the right learns nothing about
/// it), then, once the body is decoded, its `userId`: required for release, purchase and hold.get unless
/// the caller is an admin (`VALIDATION_FAILED`), and the caller's own broker user unless the caller acts
/// for end users (`FORBIDDEN`). The hold's owner is checked by the database, in the transaction that acts.
public enum BrokerAuthorization {
    /// The caller's grant, or the `FORBIDDEN` reply when `brokerUser` may not call `operation`.
    public static func grant(
        for operation: RPCOperation,
        brokerUser: String?,
        permissions: BrokerPermissions
    ) -> Result<BrokerPermissions.Grant, ErrorBody> {
        guard let grant = permissions.grant(for: brokerUser), grant.operations.contains(operation) else {
            return .failure(
                ErrorBody(
                    code: .forbidden,
                    message: brokerUser == nil
                        ? "The request carries no AMQP user_id; the caller cannot be authorized"
                        : "This broker user may not call \(operation.routingKey)",
                    details: ["operation": .string(operation.routingKey)]
                )
            )
        }
        return .success(grant)
    }

    /// The refusal for the body's `userId` (nil when left out), or nil when the caller may go on.
    public static func userRefusal(
        _ operation: RPCOperation,
        userId: String?,
        brokerUser: String?,
        grant: BrokerPermissions.Grant
    ) -> ErrorBody? {
        switch operation {
        case .hold, .release, .purchase, .holdGet, .holdExtend:
            guard let userId else {
                // hold: userId is a required field, which the decoder already reported.
                if grant.admin || operation == .hold { return nil }
                return .validation([
                    ValidationProblem(
                        field: "userId",
                        rule: .required,
                        message: "userId is required (only an admin caller may leave it out)"
                    )
                ])
            }
            guard grant.actsForUsers || userId == brokerUser else {
                return ErrorBody(
                    code: .forbidden,
                    message: "This broker user may not act for other users",
                    details: ["field": .string("userId")]
                )
            }
            return nil
        case .availability, .seatsDefine, .ping, .seatHistory:
            return nil
        }
    }

    /// Both steps at once (for tests and callers that hold the decoded body already).
    public static func check(
        _ operation: RPCOperation,
        brokerUser: String?,
        userId: String?,
        permissions: BrokerPermissions
    ) -> ErrorBody? {
        switch grant(for: operation, brokerUser: brokerUser, permissions: permissions) {
        case .failure(let refusal): refusal
        case .success(let grant): userRefusal(operation, userId: userId, brokerUser: brokerUser, grant: grant)
        }
    }
}
