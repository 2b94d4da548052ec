/// A failure of an AMQP operation, in rabbitmq-c's or the broker's own words.
///
/// `replyCode` is the broker's AMQP reply code when the broker closed the channel or the connection
/// (404 NOT_FOUND, 406 PRECONDITION_FAILED, 403 ACCESS_REFUSED, 320 CONNECTION_FORCED, ...).
/// `isRetryable` is true for connection-level failures (a new connection may well succeed) and false
/// for bad input (a wrong password, a missing queue, an invalid URL).
public struct AMQPError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        case invalidURL
        case connectionFailed
        case authenticationFailed
        case connectionClosed
        case channelClosed
        case timeout
        case protocolError
    }

    public var kind: Kind
    public var message: String
    public var replyCode: Int?
    public var isRetryable: Bool

    public init(kind: Kind, message: String, replyCode: Int? = nil, isRetryable: Bool) {
        self.kind = kind
        self.message = message
        self.replyCode = replyCode
        self.isRetryable = isRetryable
    }

    public var description: String {
        if let replyCode {
            return "AMQP \(kind) (\(replyCode)): \(message)"
        }
        return "AMQP \(kind): \(message)"
    }
}
