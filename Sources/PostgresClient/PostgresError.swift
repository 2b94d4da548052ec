/// An error from PostgreSQL or from libpq, in their own words.
///
/// `isRetryable` is true when the same work may succeed on a fresh attempt: the connection was lost
/// (SQLSTATE class 08, admin/crash shutdown, or libpq's connection went bad), or the server chose
/// this transaction as a victim (40001 serialization failure, 40P01 deadlock). Bad SQL, constraint
/// violations and bad input are not retryable.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// Could not open the connection (server down, wrong password, bad URL).
        case connectionFailed
        /// The connection broke, or was closed, before or during the call.
        case connectionLost
        /// The server rejected the statement; see `sqlState`.
        case query
        /// libpq or the server answered something this client does not handle.
        case protocolError
        /// A value could not be decoded into the requested Swift type (or a column is missing).
        case decoding
    }

    public var kind: Kind
    /// Primary message (the server's, or libpq's when the server never answered).
    public var message: String
    /// Five-character SQLSTATE, e.g. "23505"; nil when the error did not come from the server.
    public var sqlState: String?
    public var detail: String?
    /// The constraint a violation was about, e.g. "holds_pkey".
    public var constraint: String?
    public var hint: String?
    public var isRetryable: Bool

    public init(
        kind: Kind,
        message: String,
        sqlState: String? = nil,
        detail: String? = nil,
        constraint: String? = nil,
        hint: String? = nil,
        isRetryable: Bool? = nil
    ) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.constraint = constraint
        self.hint = hint
        self.isRetryable = isRetryable ?? PostgresError.defaultRetryable(kind: kind, sqlState: sqlState)
    }

    public var description: String {
        var text = "PostgreSQL \(kind)"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        if let detail { text += " (detail: \(detail))" }
        if let constraint { text += " (constraint: \(constraint))" }
        return text
    }

    // MARK: SQLSTATE helpers

    public static let uniqueViolation = "23505"
    public static let foreignKeyViolation = "23503"
    public static let checkViolation = "23514"
    public static let serializationFailure = "40001"
    public static let deadlockDetected = "40P01"
    public static let syntaxError = "42601"
    public static let undefinedTable = "42P01"

    /// Whether a retry of the whole unit of work can help, judged by kind and SQLSTATE only.
    static func defaultRetryable(kind: Kind, sqlState: String?) -> Bool {
        switch kind {
        case .connectionLost: return true
        case .decoding: return false
        case .connectionFailed, .query, .protocolError: break
        }
        guard let sqlState else { return kind == .connectionFailed }
        return isRetryableSQLState(sqlState)
    }

    static func isRetryableSQLState(_ sqlState: String) -> Bool {
        if sqlState.hasPrefix("08") { return true }  // connection exception
        switch sqlState {
        case "57P01", "57P02", "57P03":  // admin shutdown, crash shutdown, cannot connect now
            return true
        case serializationFailure, deadlockDetected:
            return true
        default:
            return false
        }
    }

    static func decoding(_ message: String) -> PostgresError {
        PostgresError(kind: .decoding, message: message, isRetryable: false)
    }

    static func closed() -> PostgresError {
        PostgresError(kind: .connectionLost, message: "connection is closed", isRetryable: true)
    }
}
