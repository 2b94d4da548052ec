/// What went wrong talking to Redis, in hiredis' or Redis's own words.
public struct RedisError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Hashable {
        /// The URL could not be understood (or asks for something this client cannot do, such as TLS).
        case invalidURL
        /// No connection could be made (refused, unresolvable host, failed handshake, wrong password).
        case connectionFailed
        /// The connection broke while a command was sent or its reply awaited; the command may or may not
        /// have run. The next call reconnects.
        case connectionLost
        /// No reply within the command timeout. The connection is dropped; the next call reconnects.
        case timeout
        /// Redis answered with an error reply ("ERR ...", "WRONGTYPE ...", "NOSCRIPT ...", Lua errors).
        case server
        /// The reply could not be read as RESP, or the call itself was malformed.
        case protocolError
    }

    public var kind: Kind
    public var message: String
    /// True for connection-level failures a retry (after the reconnect the next call makes) may cure;
    /// false for bad input and for server errors that will not change by themselves.
    public var isRetryable: Bool

    public init(kind: Kind, message: String, isRetryable: Bool? = nil) {
        self.kind = kind
        self.message = message
        self.isRetryable = isRetryable ?? Self.defaultRetryable(kind: kind, message: message)
    }

    /// For `.server` errors, the first word of Redis's message: "ERR", "WRONGTYPE", "NOSCRIPT", "BUSY", ...
    public var serverCode: String? {
        guard kind == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    public var description: String { "RedisError.\(kind): \(message)" }

    private static func defaultRetryable(kind: Kind, message: String) -> Bool {
        switch kind {
        case .connectionFailed, .connectionLost, .timeout:
            return true
        case .invalidURL, .protocolError:
            return false
        case .server:
            // Errors that describe a passing state of the server rather than the command.
            let transient = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"]
            let code = message.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
            return transient.contains(code)
        }
    }
}
