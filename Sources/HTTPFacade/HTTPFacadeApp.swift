// PLACEHOLDER: the facade's engineer replaces this file wholesale. The signature below is what
// `http-facade` (Sources/http-facade) calls; keep it, or change both sides together.
//
//   public enum HTTPFacadeApp {
//       /// `http-facade`: serves the REST routes of INTERFACE.md on `configuration.port`, prints
//       /// "Inventory service running on port N", serves until `shutdown` is triggered (SIGINT/SIGTERM),
//       /// answers what is in flight and returns within 10 s.
//       public static func run(configuration: ServiceConfiguration, logger: Logger, shutdown: ShutdownSignal) throws
//   }
//
// Called on the main thread after SIGINT/SIGTERM were blocked, configuration loaded, logging and metrics
// bootstrapped. A thrown error is logged by the command line and ends the process with status 1.

import Logging
import ServiceSupport

public enum HTTPFacadeApp {
    public static func run(configuration: ServiceConfiguration, logger: Logger, shutdown: ShutdownSignal) throws {
        StandardStreams.printLine(StartupMessages.facadeRunning(port: configuration.port))
        shutdown.wait()
    }
}
