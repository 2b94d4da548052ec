import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The start every command line of the service shares, after `SignalHandling.blockTerminationSignals()`.
public enum ServiceProcess {
    /// Loads the configuration, bootstraps logging at `LOG_LEVEL` and metrics, and returns a logger
    /// labelled `label`. A value that does not parse ends the process: one line on standard error
    /// naming the variable, exit status 1.
    public static func prepare(label: String) -> (configuration: ServiceConfiguration, logger: Logger) {
        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration.loadBlocking()
        } catch {
            StandardStreams.printError("\(label): \(error)")
            exit(1)
        }
        LoggingSetup.bootstrap(level: configuration.logLevel)
        MetricsSetup.bootstrap()
        let logger = Logger(label: label)
        logger.debug("configuration loaded", metadata: configuration.logMetadata)
        return (configuration, logger)
    }

    /// Starts the signal thread and returns the ``ShutdownSignal`` that SIGINT or SIGTERM triggers.
    public static func shutdownOnTermination(logger: Logger) -> ShutdownSignal {
        let shutdown = ShutdownSignal()
        SignalHandling.onTermination { signal in
            logger.info("stopping", metadata: ["signal": "\(SignalHandling.name(of: signal))"])
            shutdown.trigger()
        }
        return shutdown
    }

    /// Starts the signal thread for a short job with nothing to finish: SIGINT or SIGTERM ends the
    /// process at once with status 128 + signal.
    public static func exitOnTermination(logger: Logger, what: String) {
        SignalHandling.onTermination { signal in
            logger.warning("\(what) interrupted", metadata: ["signal": "\(SignalHandling.name(of: signal))"])
            exit(128 + signal)
        }
    }

    /// Runs `body`; an error it throws is logged and ends the process with status 1.
    public static func run(logger: Logger, _ body: () throws -> Void) {
        do {
            try body()
        } catch {
            logger.critical("stopped by an error", metadata: ["error": "\(error)"])
            exit(1)
        }
    }
}
