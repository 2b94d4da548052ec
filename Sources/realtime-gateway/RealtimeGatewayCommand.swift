import ArgumentParser
import Foundation
import Logging
import RealtimeGateway
import ServiceLifecycle
import ServiceSupport

struct RealtimeGatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "realtime-gateway",
        abstract: "WebSocket gateway: pushes the inventory events of the showtimes each client follows.",
        discussion: """
            Clients connect to ws://HOST:WS_PORT/?showtimeId=... (or send {"type":"subscribe","showtimeId":"..."}),
            get a snapshot of the showtime's seats, then every hold.created, hold.released, hold.expired and
            seats.purchased event of it. Configuration comes from the environment, then .env.local, then .env
            (see README.md): WS_PORT (3011), RABBITMQ_URL, RPC_TIMEOUT_MS, LOG_LEVEL, WS_CLIENT_BUFFER,
            WS_MAX_SUBSCRIPTIONS, WS_PING_INTERVAL_SECONDS, WS_WRITE_TIMEOUT_SECONDS, WS_SOCKET_SEND_BUFFER, and the
            edge's (decision 0017): CORS_ORIGIN and WS_FACADE_ORIGIN (the origins whose pages may connect),
            WS_MAX_CONNECTIONS, WS_MAX_CONNECTIONS_PER_ADDRESS, WS_HANDSHAKE_TIMEOUT_SECONDS,
            WS_SNAPSHOT_REUSE_MS, WS_MAX_PENDING_SNAPSHOTS.
            """
    )

    func run() throws {
        let (service, logger) = ServiceProcess.prepare(label: "realtime-gateway")
        let configuration: GatewayConfiguration
        do {
            configuration = try blocking { () async throws(ConfigurationError) -> GatewayConfiguration in
                try await GatewayConfiguration.load(service: service)
            }
        } catch {
            StandardStreams.printError("realtime-gateway: \(error)")
            Foundation.exit(1)
        }
        let shutdown = ServiceProcess.shutdownOnTermination(logger: logger)
        ServiceProcess.run(logger: logger) {
            let gateway = try RealtimeGateway(configuration: configuration, logger: logger) { port in
                StandardStreams.printLine("Realtime gateway listening on port \(port)")
            }
            // The gateway's own ServiceGroup takes no signals: the signal thread of ServiceSupport has them
            // all (they are blocked everywhere else), and turns the first into a graceful shutdown here.
            let group = ServiceGroup(
                configuration: .init(services: [gateway], gracefulShutdownSignals: [], logger: logger)
            )
            shutdown.onTrigger {
                Task { await group.triggerGracefulShutdown() }
            }
            try blocking { () async throws(any Error) in try await group.run() }
        }
        logger.info("stopped")
    }
}

/// Runs `body` on Swift's concurrency and blocks this (main, non-pool) thread until it finishes.
private func blocking<T: Sendable, E: Error>(_ body: @escaping @Sendable () async throws(E) -> T) throws(E) -> T {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, E>?
    Task.detached {
        do throws(E) {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        done.signal()
    }
    done.wait()
    return try result!.get()
}
