import Contracts
import Logging

/// Everything the core's service layer needs to run, already parsed and validated.
///
/// `InventoryRPCApp` fills it from the process configuration (environment, `.env` files); tests build it
/// directly so each fixture can point the core at its own vhost, database and Redis.
public struct CoreConfiguration: Sendable {
    public var databaseURL: String
    public var redisURL: String
    public var rabbitmqURL: String
    public var holdTTLSeconds: Int
    public var expiryIntervalSeconds: Int
    public var maxSeatsPerHold: Int
    /// RPC worker threads; each owns one broker, one database and one Redis connection.
    public var workers: Int
    /// Unacknowledged deliveries per worker, shared by its consumers (one per operation) (`basic.qos` with `global`: per
    /// channel). A worker decides one request at a time; what it holds beyond that waits behind it, so this is
    /// kept small (decision 0013): the rest stays in the queues, where any free worker takes it.
    public var prefetch: UInt16
    /// Port of the ops HTTP server (`/healthz`, `/readyz`, `/metrics`); 0 picks a free one, nil turns it off.
    public var opsPort: Int?
    /// How long one Redis command may take before Redis counts as unreachable.
    public var redisCommandTimeout: Duration
    /// The outbox relay polls this often even without a NOTIFY (a safety net).
    public var outboxPollInterval: Duration
    /// How often a relay that is not the leader tries to become it.
    public var relayLeaderRetry: Duration
    /// The most holds per expiry batch; the sweep repeats until a batch comes back short. Below it the batch
    /// size is tuned so one batch takes about 5 ms: it holds its seats' locks, which a rush on those seats
    /// waits for, that long (`SweepBatchSize`, decision 0021).
    public var expiryBatchSize: Int
    /// Print the seed's start-up lines to standard output.
    public var printsStartupLines: Bool
    /// `RPC_PERMISSIONS`: which broker user (the request's AMQP `user_id`) may call which operation.
    public var permissions: BrokerPermissions
    /// Idempotency records older than this are purged by the expiry timer (INTERFACE.md: at least 24 h).
    public var idempotencyRetentionHours: Int
    /// Records deleted per purge transaction; the purge repeats until a batch comes back short.
    public var idempotencyPurgeBatchSize: Int
    /// `MAX_HOLD_SECONDS`: the longest a hold may live with its extensions, from its creation.
    public var maxHoldSeconds: Int
    /// `HISTORY_RETENTION_DAYS`: seat history entries older than this are purged by the expiry timer.
    public var historyRetentionDays: Int
    // Issue 14 (i14-core): limits and the AMQP edge.
    /// `MAX_SEATS_PER_USER`: the most seats of one showtime a user may have in live holds; 0: no limit.
    public var maxSeatsPerUser: Int
    /// `SEAT_LIMIT_COUNTS_PURCHASED`: purchased seats count against `maxSeatsPerUser` too.
    public var seatLimitCountsPurchased: Bool
    /// `MAX_REQUEST_BYTES`: a request body over this is answered `PAYLOAD_TOO_LARGE` without being read.
    public var maxRequestBytes: Int
    /// `OPS_BIND`: the address the operations port listens on.
    public var opsBindAddress: String

    /// The limit the store applies to every hold; nil when `maxSeatsPerUser` is 0.
    public var seatLimit: SeatLimit? {
        maxSeatsPerUser > 0
            ? SeatLimit(maxSeatsPerUser: maxSeatsPerUser, countsPurchased: seatLimitCountsPurchased) : nil
    }

    public init(
        databaseURL: String = "postgresql://postgres:postgres@localhost:5432/inventory_db",
        redisURL: String = "redis://localhost:6379",
        rabbitmqURL: String = "amqp://guest:guest@localhost:5672",
        holdTTLSeconds: Int = 300,
        expiryIntervalSeconds: Int = 30,
        maxSeatsPerHold: Int = 10,
        workers: Int = 8,
        prefetch: UInt16 = 8,
        opsPort: Int? = 3006,
        redisCommandTimeout: Duration = .milliseconds(500),
        outboxPollInterval: Duration = .seconds(1),
        relayLeaderRetry: Duration = .seconds(2),
        expiryBatchSize: Int = 1000,
        printsStartupLines: Bool = true,
        permissions: BrokerPermissions = .default,
        idempotencyRetentionHours: Int = 48,
        idempotencyPurgeBatchSize: Int = 500,
        maxHoldSeconds: Int = 900,
        historyRetentionDays: Int = 365,
        maxSeatsPerUser: Int = 10,
        seatLimitCountsPurchased: Bool = false,
        maxRequestBytes: Int = 2 << 20,
        opsBindAddress: String = "127.0.0.1"
    ) {
        self.databaseURL = databaseURL
        self.redisURL = redisURL
        self.rabbitmqURL = rabbitmqURL
        self.holdTTLSeconds = holdTTLSeconds
        self.expiryIntervalSeconds = expiryIntervalSeconds
        self.maxSeatsPerHold = maxSeatsPerHold
        self.workers = workers
        self.prefetch = prefetch
        self.opsPort = opsPort
        self.redisCommandTimeout = redisCommandTimeout
        self.outboxPollInterval = outboxPollInterval
        self.relayLeaderRetry = relayLeaderRetry
        self.expiryBatchSize = expiryBatchSize
        self.printsStartupLines = printsStartupLines
        self.permissions = permissions
        self.idempotencyRetentionHours = idempotencyRetentionHours
        self.idempotencyPurgeBatchSize = idempotencyPurgeBatchSize
        self.maxHoldSeconds = maxHoldSeconds
        self.historyRetentionDays = historyRetentionDays
        self.maxSeatsPerUser = maxSeatsPerUser
        self.seatLimitCountsPurchased = seatLimitCountsPurchased
        self.maxRequestBytes = maxRequestBytes
        self.opsBindAddress = opsBindAddress
    }
}
