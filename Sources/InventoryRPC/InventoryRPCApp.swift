import Contracts
import Logging
import PostgresClient
import ServiceSupport

/// What the `inventory-rpc` command line calls, on the main thread, after SIGINT/SIGTERM were blocked,
/// configuration loaded and logging and metrics bootstrapped. A thrown error is logged by the command line
/// and ends the process with status 1.
public enum InventoryRPCApp {
    /// The demo showtime the README's run command provisions, so the seed's example requests work at once.
    public static let demoShowtimeID = "showtime_123"
    public static let demoSeatIDs = (1...100).map { "seat_\($0)" }
    /// The demo seat map: `seat_1`...`seat_50` in the Stalls (rows A-E, premium), `seat_51`...`seat_100` in the
    /// Circle (rows F-J, standard), ten seats a row numbered 1-10; rank 1 for the front row, one more per row.
    public static let demoSeats: [SeatDefinition] = (1...100).map { index in
        let rowIndex = (index - 1) / 10
        return SeatDefinition(
            seatId: "seat_\(index)",
            section: rowIndex < 5 ? "Stalls" : "Circle",
            row: String(UnicodeScalar(UInt8(ascii: "A") + UInt8(rowIndex))),
            number: (index - 1) % 10 + 1,
            category: rowIndex < 5 ? "premium" : "standard",
            rank: rowIndex + 1
        )
    }

    /// `inventory-rpc migrate`: applies the schema migrations; safe to run twice or from two hosts.
    public static func migrate(configuration: ServiceConfiguration, logger: Logger) throws {
        let connection = try PostgresConnection(url: configuration.databaseURL, logger: logger)
        defer { connection.close() }
        let applied = try Migrator.migrate(connection, logger: logger)
        logger.info(
            applied.isEmpty ? "schema up to date" : "migrations applied",
            metadata: ["versions": "\(applied.map(String.init).joined(separator: ","))"]
        )
    }

    /// `inventory-rpc provision-demo` (and `serve --demo`): migrates, then defines `showtime_123` with
    /// `seat_1` ... `seat_100` with sections and rows (`demoSeats`). Idempotent: seats that exist keep their
    /// state (and get the demo metadata if they are available; a held or sold one keeps what it had).
    public static func provisionDemo(configuration: ServiceConfiguration, logger: Logger) throws {
        try migrate(configuration: configuration, logger: logger)
        let connection = try PostgresConnection(url: configuration.databaseURL, logger: logger)
        defer { connection.close() }
        let store = try InventoryStore(connection: connection)
        let defined: SeatsDefined
        switch try store.defineSeatMap(SeatsDefineRequest(showtimeId: demoShowtimeID, seats: demoSeats)) {
        case .success(let done): defined = done
        case .failure(let refusal):
            logger.warning(
                "demo seat metadata not applied: some seats are held or sold",
                metadata: ["error": "\(refusal.message)"]
            )
            defined = try store.defineSeats(SeatsDefineRequest(showtimeId: demoShowtimeID, seatIds: demoSeatIDs))
        }
        logger.info(
            "demo showtime provisioned",
            metadata: [
                "showtime.id": "\(defined.showtimeId)", "seats": "\(defined.seatCount)", "added": "\(defined.added)",
            ]
        )
    }

    /// `inventory-rpc serve`: connects, prints INTERFACE.md's start-up lines, serves until `shutdown` is
    /// triggered (SIGINT/SIGTERM), finishes in-flight work and returns within 10 s.
    public static func serve(configuration: ServiceConfiguration, logger: Logger, shutdown: ShutdownSignal) throws {
        // Memory stays flat after large (hostile) requests: decision 0015.
        FreedMemory.returnLargeBlocksAtOnce()
        let core = CoreService(
            configuration: CoreConfiguration(configuration),
            logger: logger,
            shutdown: shutdown,
            metricsExposition: { MetricsSetup.exposition() }
        )
        try core.run()
    }
}

extension CoreConfiguration {
    /// The core's part of the process configuration.
    public init(_ configuration: ServiceConfiguration) {
        self.init(
            databaseURL: configuration.databaseURL,
            redisURL: configuration.redisURL,
            rabbitmqURL: configuration.rabbitMQURL,
            holdTTLSeconds: configuration.holdTTLSeconds,
            expiryIntervalSeconds: configuration.expiryIntervalSeconds,
            maxSeatsPerHold: configuration.maxSeatsPerHold,
            workers: configuration.workers,
            prefetch: UInt16(clamping: configuration.prefetch),
            opsPort: configuration.opsPort,
            permissions: configuration.rpcPermissions,
            idempotencyRetentionHours: configuration.idempotencyRetentionHours,
            maxHoldSeconds: configuration.maxHoldSeconds,
            historyRetentionDays: configuration.historyRetentionDays,
            maxSeatsPerUser: configuration.maxSeatsPerUser,
            seatLimitCountsPurchased: configuration.seatLimitCountsPurchased,
            maxRequestBytes: configuration.maxRequestBytes,
            opsBindAddress: configuration.opsBindAddress
        )
    }
}
