/// A value in a headers table or in queue arguments. Incoming integers of any width become `.int`,
/// floats `.double`, byte arrays `.string` (decoded as UTF-8); other kinds (tables, arrays, decimals)
/// are dropped.
public enum AMQPFieldValue: Sendable, Hashable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
}

/// The basic properties of a message. `persistent` is delivery mode 2; `timestamp` is seconds since
/// the Unix epoch, as AMQP defines it. `userID` is AMQP's `user_id`: RabbitMQ refuses a publish whose
/// `user_id` is not the connection's login (406 PRECONDITION_FAILED), so a consumer can trust it as the
/// publisher's broker user.
public struct AMQPProperties: Sendable, Hashable {
    public var contentType: String?
    public var correlationID: String?
    public var replyTo: String?
    /// Per-message TTL in milliseconds, as a decimal string ("1500").
    public var expiration: String?
    public var messageID: String?
    public var persistent: Bool
    public var timestamp: Int64?
    public var type: String?
    public var userID: String?
    public var headers: [String: AMQPFieldValue]

    public init(
        contentType: String? = nil, correlationID: String? = nil, replyTo: String? = nil,
        expiration: String? = nil, messageID: String? = nil, persistent: Bool = false, timestamp: Int64? = nil,
        type: String? = nil, userID: String? = nil, headers: [String: AMQPFieldValue] = [:]
    ) {
        self.contentType = contentType
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageID = messageID
        self.persistent = persistent
        self.timestamp = timestamp
        self.type = type
        self.userID = userID
        self.headers = headers
    }
}

public struct AMQPMessage: Sendable {
    public var deliveryTag: UInt64
    public var exchange: String
    public var routingKey: String
    public var redelivered: Bool
    public var consumerTag: String
    public var properties: AMQPProperties
    /// Empty when `bodyDropped`.
    public var body: [UInt8]
    /// The body's size as its content header announced it.
    public var bodySize: Int
    /// The body was over the connection's `maxBodySize`: read from the socket and dropped, never kept.
    public var bodyDropped: Bool

    public init(
        deliveryTag: UInt64, exchange: String, routingKey: String, redelivered: Bool, consumerTag: String,
        properties: AMQPProperties, body: [UInt8], bodySize: Int? = nil, bodyDropped: Bool = false
    ) {
        self.deliveryTag = deliveryTag
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.consumerTag = consumerTag
        self.properties = properties
        self.body = body
        self.bodySize = bodySize ?? body.count
        self.bodyDropped = bodyDropped
    }
}

/// A `mandatory` publish the broker could not route (basic.return), e.g. 312 NO_ROUTE.
public struct AMQPReturnedMessage: Sendable {
    public var replyCode: Int
    public var replyText: String
    public var exchange: String
    public var routingKey: String
    public var properties: AMQPProperties
    public var body: [UInt8]

    public init(
        replyCode: Int, replyText: String, exchange: String, routingKey: String, properties: AMQPProperties,
        body: [UInt8]
    ) {
        self.replyCode = replyCode
        self.replyText = replyText
        self.exchange = exchange
        self.routingKey = routingKey
        self.properties = properties
        self.body = body
    }
}

public enum AMQPEvent: Sendable {
    case delivery(AMQPMessage)
    /// Publisher confirm: the broker took responsibility for `deliveryTag` (and all before it if `multiple`).
    case ack(deliveryTag: UInt64, multiple: Bool)
    /// Publisher confirm: the broker lost `deliveryTag` (and all before it if `multiple`).
    case nack(deliveryTag: UInt64, multiple: Bool)
    /// A `mandatory` publish nobody could route. Its confirm (an ack) follows.
    case returned(AMQPReturnedMessage)
}

public enum ExchangeType: String, Sendable {
    case direct, topic, fanout, headers
}
