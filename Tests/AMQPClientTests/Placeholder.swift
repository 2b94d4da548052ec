import Testing

@testable import AMQPClient

@Suite struct AMQPClientPlaceholder {
    @Test("the module builds") func builds() {}
}
