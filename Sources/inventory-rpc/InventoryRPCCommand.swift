import ArgumentParser
import InventoryRPC
import ServiceSupport

struct InventoryRPCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory-rpc",
        abstract: "The seat inventory core: AMQP RPC workers, the outbox relay and the hold expiry sweep.",
        discussion: "Configuration comes from the environment, then .env.local, then .env (see README.md).",
        subcommands: [Migrate.self, Serve.self, ProvisionDemo.self]
    )
}

extension InventoryRPCCommand {
    struct Migrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply the database schema migrations (safe to run twice, or from two hosts at once)."
        )

        func run() throws {
            let (configuration, logger) = ServiceProcess.prepare(label: "inventory-rpc")
            // Migrations run in transactions: stopping mid-way rolls back, so a signal just ends the process.
            ServiceProcess.exitOnTermination(logger: logger, what: "migration")
            ServiceProcess.run(logger: logger) {
                try InventoryRPCApp.migrate(configuration: configuration, logger: logger)
            }
        }
    }

    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the core until SIGINT or SIGTERM, then finish in-flight work and exit 0."
        )

        @Flag(help: "First migrate and provision the demo showtime (showtime_123, seat_1 ... seat_100), idempotently.")
        var demo = false

        func run() throws {
            let (configuration, logger) = ServiceProcess.prepare(label: "inventory-rpc")
            let shutdown = ServiceProcess.shutdownOnTermination(logger: logger)
            ServiceProcess.run(logger: logger) {
                if demo { try InventoryRPCApp.provisionDemo(configuration: configuration, logger: logger) }
                try InventoryRPCApp.serve(configuration: configuration, logger: logger, shutdown: shutdown)
            }
            logger.info("stopped")
        }
    }
}

extension InventoryRPCCommand {
    struct ProvisionDemo: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "provision-demo",
            abstract: "Migrate, then define the demo showtime showtime_123 with seat_1 ... seat_100 (idempotent)."
        )

        func run() throws {
            let (configuration, logger) = ServiceProcess.prepare(label: "inventory-rpc")
            ServiceProcess.exitOnTermination(logger: logger, what: "provisioning")
            ServiceProcess.run(logger: logger) {
                try InventoryRPCApp.provisionDemo(configuration: configuration, logger: logger)
            }
        }
    }
}
