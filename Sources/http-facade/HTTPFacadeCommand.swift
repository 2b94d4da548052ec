import ArgumentParser

@main
struct HTTPFacadeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "http-facade")
    func run() throws {}
}
