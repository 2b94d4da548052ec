/// A Lua script, named by the SHA-1 of its source as Redis names it, so `RedisConnection.run` can send
/// EVALSHA first and the source only when the server does not know it yet.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    /// Lowercase hex SHA-1 of `source`: what `SCRIPT LOAD` answers and `EVALSHA` takes.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        self.sha1 = SHA1.hexDigest(source)
    }
}
