import Testing

@testable import ServiceSupport

@Suite struct ServiceSupportPlaceholder {
    @Test("the module builds") func builds() {}
}
