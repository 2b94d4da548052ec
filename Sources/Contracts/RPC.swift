/// The operations of the `inventory.rpc` direct exchange; each has its durable queue
/// `inventory.<routing key>` (contracts/asyncapi.yaml).
public enum RPCOperation: String, CaseIterable, Sendable {
    case hold = "hold.request"
    case release = "release.request"
    case purchase = "purchase.request"
    case holdGet = "hold.get.request"
    case availability = "availability.request"
    case seatsDefine = "seats.define.request"
    case ping = "ping.request"
    // Venue features (issue 15).
    case holdExtend = "hold.extend.request"
    case seatHistory = "seat.history.request"

    public static let exchange = "inventory.rpc"

    public var routingKey: String { rawValue }
    public var queueName: String { "inventory." + rawValue }
}

/// AMQP header and HTTP header names of the contract.
public enum ContractHeaders {
    /// AMQP header: absolute deadline, Unix epoch milliseconds (an integer).
    public static let deadline = "x-deadline"
    /// AMQP header: the idempotency key of a `hold.request`, as an alternative to the body field.
    public static let amqpIdempotencyKey = "idempotency-key"
    /// HTTP request header (IETF draft spelling); lowercased as HTTPServer hands headers over.
    public static let httpIdempotencyKey = "idempotency-key"
    /// HTTP request header, the seed's spelling; lowercased.
    public static let httpIdempotencyKeySeed = "idempotencykey"
    /// AMQP header (a bool, `true`) on the reply to a `hold.request` that replayed an earlier hold.
    public static let amqpIdempotentReplayed = "x-idempotent-replayed"
    /// HTTP response header on a replayed answer, with the value `true`.
    public static let idempotentReplayed = "Idempotent-Replayed"
    public static let contentType = "application/json"
}

/// Body of every RPC reply: `{"ok": true, "data": ...}` or `{"ok": false, "error": {...}}`.
public enum RPCReply<T: Codable & Sendable>: Codable, Sendable {
    case ok(T)
    case error(ErrorBody)

    private enum CodingKeys: String, CodingKey { case ok, data, error }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if try container.decode(Bool.self, forKey: .ok) {
            self = .ok(try container.decode(T.self, forKey: .data))
        } else {
            self = .error(try container.decode(ErrorBody.self, forKey: .error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .ok(let data):
            try container.encode(true, forKey: .ok)
            try container.encode(data, forKey: .data)
        case .error(let error):
            try container.encode(false, forKey: .ok)
            try container.encode(error, forKey: .error)
        }
    }

    public var result: Result<T, ErrorBody> {
        switch self {
        case .ok(let data): .success(data)
        case .error(let error): .failure(error)
        }
    }

    /// The reply's body, encoded with `ContractJSON`.
    public func body() throws -> [UInt8] { try ContractJSON.encode(self) }
}

extension RPCReply: Equatable where T: Equatable {}
extension RPCReply: Hashable where T: Hashable {}
