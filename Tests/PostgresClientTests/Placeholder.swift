import Testing

@testable import PostgresClient

@Suite struct PostgresClientPlaceholder {
    @Test("the module builds") func builds() {}
}
