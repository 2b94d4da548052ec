import AMQPClient
import Contracts
import Synchronization

/// One request: where it goes, its body (already encoded: this layer moves bytes) and how long its
/// caller waits for the reply.
public struct RPCRequest: Sendable {
    public var exchange: String
    public var routingKey: String
    public var body: [UInt8]
    public var timeout: Duration
    /// nil: the client makes one up. A caller that sets it (to log it before the reply comes) takes it
    /// from `RPCClient.makeCorrelationID()` or `CorrelationIDs`; one still pending fails the new call.
    public var correlationID: String?
    /// Headers of this request besides `x-deadline`, which the client sets (an `idempotency-key`, say).
    public var headers: [String: AMQPFieldValue]

    public init(
        exchange: String,
        routingKey: String,
        body: [UInt8],
        timeout: Duration,
        correlationID: String? = nil,
        headers: [String: AMQPFieldValue] = [:]
    ) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.timeout = timeout
        self.correlationID = correlationID
        self.headers = headers
    }

    /// A request of INTERFACE.md: to the `inventory.rpc` exchange with the operation's routing key.
    public init(
        _ operation: RPCOperation,
        body: [UInt8],
        timeout: Duration,
        correlationID: String? = nil,
        headers: [String: AMQPFieldValue] = [:]
    ) {
        self.init(
            exchange: RPCOperation.exchange,
            routingKey: operation.routingKey,
            body: body,
            timeout: timeout,
            correlationID: correlationID,
            headers: headers
        )
    }

    /// The queue replies come from: RabbitMQ's direct reply-to.
    public static let replyQueue = "amq.rabbitmq.reply-to"

    /// The properties the request is published with, `remaining` before its deadline, when the wall
    /// clock says `epochMilliseconds`: INTERFACE.md's `reply_to`, `correlation_id` (also the `message_id`,
    /// which the core keys requests without an idempotency key by), `content_type`, and both deadline
    /// forms — `expiration` (so the broker drops a request nobody waits for any more) and `x-deadline`
    /// (so a core that gets it late does not act on it). They are set over `base`, the properties every
    /// request of a connection shares (such as `user_id`), and over this request's `headers`.
    public func properties(
        base: AMQPProperties,
        correlationID: String,
        remaining: Duration,
        epochMilliseconds: Int64
    ) -> AMQPProperties {
        let (seconds, attoseconds) = remaining.components
        // Rounded up: a request is never dropped before its caller gives up on it.
        let milliseconds = max(1, seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        var properties = base
        properties.contentType = ContractHeaders.contentType
        properties.correlationID = correlationID
        properties.messageID = correlationID
        properties.replyTo = Self.replyQueue
        properties.expiration = "\(milliseconds)"
        if !headers.isEmpty { properties.headers.merge(headers) { _, request in request } }
        properties.headers[ContractHeaders.deadline] = .int(epochMilliseconds + milliseconds)
        return properties
    }
}

/// A reply as it came off the wire. Decoding its body (Contracts' `RPCReply`) is the caller's business.
public struct RPCResponse: Sendable {
    public var body: [UInt8]
    public var properties: AMQPProperties

    public init(body: [UInt8], properties: AMQPProperties) {
        self.body = body
        self.properties = properties
    }

    /// The core marked the reply `x-idempotent-replayed: true`: it replays an earlier hold.
    public var isIdempotentReplay: Bool {
        switch properties.headers[ContractHeaders.amqpIdempotentReplayed] {
        case .bool(let value)?: value
        case .string(let text)?: text.lowercased() == "true"
        case .int(let number)?: number != 0
        default: false
        }
    }
}

/// Why a call got no reply.
public enum RPCFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// No broker connection: the request was not sent (at once, or at its deadline when the client waits
    /// for a connection). Safe to retry.
    case notConnected
    /// The request was sent, then the connection was lost before its reply: transient, but the core may
    /// or may not have acted on it.
    case connectionLost
    /// The broker returned the `mandatory` request: no queue is bound to its routing key (no core
    /// declared the operation's queue).
    case unroutable
    /// Published, but no reply before the deadline.
    case timedOut
    /// The client was stopped (or the channel closed) before the reply.
    case stopped
    /// The caller set a correlation id another pending call has: a bug of the caller; nothing was sent.
    case duplicateCorrelationID

    public var description: String {
        switch self {
        case .notConnected: "no connection to the message broker"
        case .connectionLost: "the broker connection was lost before the reply"
        case .unroutable: "the broker could not route the request (no queue for its routing key)"
        case .timedOut: "no reply before the deadline"
        case .stopped: "the RPC client stopped"
        case .duplicateCorrelationID: "correlation id already in use"
        }
    }
}

/// Correlation ids without a UUID per call: a random prefix (40 bits, so that the logs of different
/// processes and restarts do not mix) and a counter, both base 36. Up to 15 bytes for the first two
/// billion calls, so Swift keeps them inline (no allocation, no reference counting) in the hot path.
/// Replies by direct reply-to only reach the channel that published, so only that channel needs them
/// unique. Any thread may ask.
public final class CorrelationIDs: Sendable {
    private let prefix: String
    private let counter = Atomic<UInt64>(0)

    public init() {
        prefix = String(UInt64.random(in: 0..<(1 << 40)), radix: 36)
    }

    public func next() -> String {
        prefix + "-" + String(counter.wrappingAdd(1, ordering: .relaxed).newValue, radix: 36)
    }
}
