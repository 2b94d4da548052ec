import ArgumentParser

@main
struct InventoryRPCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inventory-rpc")
    func run() throws {}
}
