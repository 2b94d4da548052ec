import Testing

@testable import HTTPFacade

@Suite struct HTTPFacadePlaceholder {
    @Test("the module builds") func builds() {}
}
