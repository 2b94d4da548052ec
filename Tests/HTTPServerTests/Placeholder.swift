import Testing

@testable import HTTPServer

@Suite struct HTTPServerPlaceholder {
    @Test("the module builds") func builds() {}
}
