import ArgumentParser
import HTTPFacade
import ServiceSupport

struct HTTPFacadeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http-facade",
        abstract: "The seat inventory REST facade: each route is one AMQP RPC to the core.",
        discussion: """
            Runs until SIGINT or SIGTERM, then answers what is in flight and exits 0. Configuration comes \
            from the environment, then .env.local, then .env (see README.md).
            """
    )

    func run() throws {
        let (configuration, logger) = ServiceProcess.prepare(label: "http-facade")
        let shutdown = ServiceProcess.shutdownOnTermination(logger: logger)
        ServiceProcess.run(logger: logger) {
            try HTTPFacadeApp.run(configuration: configuration, logger: logger, shutdown: shutdown)
        }
        logger.info("stopped")
    }
}
