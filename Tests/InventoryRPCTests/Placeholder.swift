import Testing

@testable import InventoryRPC

@Suite struct InventoryRPCPlaceholder {
    @Test("the module builds") func builds() {}
}
