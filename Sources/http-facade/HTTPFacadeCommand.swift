import ArgumentParser
import Foundation
import HTTPFacade
import ServiceSupport

struct HTTPFacadeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http-facade",
        abstract: "The seat inventory REST facade: each route is one AMQP RPC to the core.",
        subcommands: [Serve.self, Token.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the REST routes (the default).",
        discussion: """
            Runs until SIGINT or SIGTERM, then answers what is in flight and exits 0. Configuration comes \
            from the environment, then .env.local, then .env (see README.md).
            """
    )

    func run() throws {
        let (configuration, logger) = ServiceProcess.prepare(label: "http-facade")
        do {
            try configuration.auth.requireTokenKey()
        } catch {
            StandardStreams.printError("http-facade: \(error)")
            throw ExitCode.failure
        }
        let shutdown = ServiceProcess.shutdownOnTermination(logger: logger)
        ServiceProcess.run(logger: logger) {
            try HTTPFacadeApp.run(configuration: configuration, logger: logger, shutdown: shutdown)
        }
        logger.info("stopped")
    }
}

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print an HS256 token signed with the configured JWT_SECRET (development and tests).",
        discussion: """
            Reads JWT_SECRET, JWT_ISSUER and JWT_AUDIENCE like the facade does (environment, .env.local, \
            .env) and prints one token on standard output, e.g. \
            `http-facade token --sub user_456 --scope inventory:purchase --ttl 3600`.
            """
    )

    @Option(help: "The user (sub claim): 1 to 128 characters of A-Z a-z 0-9 . _ : -")
    var sub: String

    @Option(help: "Scopes, space-separated (inventory:purchase, inventory:admin); none by default.")
    var scope: String = ""

    @Option(help: "Lifetime in seconds.")
    var ttl: Int = 3600

    func validate() throws {
        guard (1...31_536_000).contains(ttl) else { throw ValidationError("--ttl must be 1 to 31536000 seconds") }
        guard !sub.isEmpty, sub.count <= 128,
            sub.unicodeScalars.allSatisfy({
                $0.isASCII && ($0.properties.isAlphabetic || "0123456789._:-".unicodeScalars.contains($0))
            })
        else { throw ValidationError("--sub must be 1 to 128 characters of A-Z a-z 0-9 . _ : -") }
    }

    func run() throws {
        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration.loadBlocking()
        } catch {
            StandardStreams.printError("http-facade token: \(error)")
            throw ExitCode.failure
        }
        guard let secret = configuration.auth.jwtSecret else {
            StandardStreams.printError(
                "http-facade token: JWT_SECRET is not set (tokens are minted with the HS256 secret only)"
            )
            throw ExitCode.failure
        }
        let minter = TokenMinter.hs256Blocking(secret: secret)
        let scopes = scope.split(separator: " ").map(String.init)
        StandardStreams.printLine(
            try minter.mint(
                subject: sub,
                scopes: scopes,
                ttlSeconds: ttl,
                issuer: configuration.auth.jwtIssuer,
                audience: configuration.auth.jwtAudience
            )
        )
    }
}
