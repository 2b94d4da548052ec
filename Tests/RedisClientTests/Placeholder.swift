import Testing

@testable import RedisClient

@Suite struct RedisClientPlaceholder {
    @Test("the module builds") func builds() {}
}
