// PLACEHOLDER: the core's engineer replaces this file wholesale. The signatures below are what
// `inventory-rpc` (Sources/inventory-rpc) calls; keep them, or change both sides together.
//
//   public enum InventoryRPCApp {
//       /// `inventory-rpc migrate`: applies the schema migrations; safe to run twice or from two hosts.
//       public static func migrate(configuration: ServiceConfiguration, logger: Logger) throws
//       /// `inventory-rpc serve`: connects, prints INTERFACE.md's start-up lines, serves until
//       /// `shutdown` is triggered (SIGINT/SIGTERM), finishes in-flight work and returns within 10 s.
//       public static func serve(configuration: ServiceConfiguration, logger: Logger, shutdown: ShutdownSignal) throws
//   }
//
// Called on the main thread after SIGINT/SIGTERM were blocked, configuration loaded, logging and metrics
// bootstrapped. A thrown error is logged by the command line and ends the process with status 1.

import Logging
import ServiceSupport

public enum InventoryRPCApp {
    public static func migrate(configuration: ServiceConfiguration, logger: Logger) throws {
        logger.info("no migrations yet (placeholder)")
    }

    public static func serve(configuration: ServiceConfiguration, logger: Logger, shutdown: ShutdownSignal) throws {
        StandardStreams.printLine(StartupMessages.databaseLoaded)
        StandardStreams.printLine(StartupMessages.redisConnected)
        StandardStreams.printLine(StartupMessages.rabbitMQConnected)
        StandardStreams.printLine(
            StartupMessages.expiryWorkerStarted(intervalSeconds: configuration.expiryIntervalSeconds)
        )
        StandardStreams.printLine(StartupMessages.holdTTL(seconds: configuration.holdTTLSeconds))
        shutdown.wait()
    }
}
