import Testing

@testable import Contracts

@Suite struct ContractsPlaceholder {
    @Test("the module builds") func builds() {}
}
