import Logging
import ServiceSupport

/// The expiry sweep: every `EXPIRY_INTERVAL_SECONDS`, marks dead holds `expired` in batches (the SQL uses
/// `FOR UPDATE SKIP LOCKED`, so several instances never expire one hold twice), then deletes their seat
/// locks. A hold is dead at `expiresAt` whether or not this has run: the sweep only tidies up and
/// publishes `hold.expired` (through the outbox, in the same transaction). Each batch is a few set
/// statements in one transaction (migration 11, decision 0021) and one Redis pipeline; the batch size
/// bounds how long the batch's seat locks, which a rush on those seats waits for, are held.
final class ExpiryTimer {
    private let context: CoreContext
    private var logger: Logger
    private let database: DatabaseSession
    private let locks: SeatLocks
    /// Tuned from batch to batch, across sweeps.
    private var batchSize: SweepBatchSize

    init(context: CoreContext) {
        self.context = context
        var logger = context.logger
        logger[metadataKey: "thread"] = "expiry-timer"
        self.logger = logger
        batchSize = SweepBatchSize(maximum: context.configuration.expiryBatchSize)
        database = DatabaseSession(
            url: context.configuration.databaseURL,
            owner: "expiry-timer",
            health: CoreHealth(),
            logger: logger
        )
        locks = SeatLocks(
            url: context.configuration.redisURL,
            commandTimeout: context.configuration.redisCommandTimeout,
            circuit: context.circuit,
            metrics: context.metrics,
            owner: "expiry-timer",
            logger: logger
        )
    }

    func run() {
        let interval = Duration.seconds(max(1, context.configuration.expiryIntervalSeconds))
        repeat {
            sweep()
        } while !context.stop.wait(timeout: interval)
        database.close()
        locks.close()
    }

    /// One sweep: batches until one comes back short. Returns how many holds it expired.
    @discardableResult
    func sweep() -> Int {
        guard let store = database.currentStore() else { return 0 }
        var total = 0
        var batches = 0
        let began = ContinuousClock.now
        do {
            while !context.stop.isTriggered {
                batches += 1
                let size = batchSize.current
                let started = ContinuousClock.now
                let expired = try store.expireDueHolds(batchSize: size)
                batchSize.record(count: expired.count, took: ContinuousClock.now - started)
                locks.releaseAll(expired)
                total += expired.count
                context.metrics.expired(expired.count)
                if expired.count < size { break }
            }
        } catch {
            if !database.handle(error) {
                logger.error("expiry sweep failed", metadata: ["error": "\(error)"])
            }
        }
        if total > 0 {
            logger.info(
                "expired holds",
                metadata: [
                    "count": "\(total)", "batches": "\(batches)", "next_batch_size": "\(batchSize.current)",
                    "seconds": "\((ContinuousClock.now - began) / .seconds(1))",
                ]
            )
        }
        purgeIdempotencyRecords()
        purgeSeatHistory()
        pruneAvailabilityChanges()
        return total
    }

    /// Deletes the availability change rows no cached snapshot can need any more (migration 13, decision 0023):
    /// each lives one to two sweep intervals.
    func pruneAvailabilityChanges() {
        guard let store = database.currentStore() else { return }
        do {
            let deleted = try store.pruneAvailabilityChanges()
            if deleted > 0 { logger.debug("pruned availability changes", metadata: ["count": "\(deleted)"]) }
        } catch {
            if !database.handle(error) {
                logger.error("availability change pruning failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Deletes the seat history entries older than `HISTORY_RETENTION_DAYS`, in short transactions (as the
    /// idempotency purge). Returns how many it deleted.
    @discardableResult
    func purgeSeatHistory() -> Int {
        guard let store = database.currentStore() else { return 0 }
        let batch = context.configuration.idempotencyPurgeBatchSize
        var total = 0
        do {
            while !context.stop.isTriggered {
                let deleted = try store.purgeSeatHistory(
                    retentionDays: context.configuration.historyRetentionDays,
                    batchSize: batch
                )
                total += deleted
                if deleted < batch { break }
            }
        } catch {
            if !database.handle(error) {
                logger.error("seat history purge failed", metadata: ["error": "\(error)"])
            }
        }
        if total > 0 { logger.info("purged seat history", metadata: ["count": "\(total)"]) }
        return total
    }

    /// Deletes the idempotency records older than `IDEMPOTENCY_RETENTION_HOURS`, in short transactions of
    /// `idempotencyPurgeBatchSize` rows (several instances share the work: the SQL skips locked rows).
    /// Returns how many it deleted.
    @discardableResult
    func purgeIdempotencyRecords() -> Int {
        guard let store = database.currentStore() else { return 0 }
        let batch = context.configuration.idempotencyPurgeBatchSize
        var total = 0
        do {
            while !context.stop.isTriggered {
                let deleted = try store.purgeIdempotencyRecords(
                    retentionHours: context.configuration.idempotencyRetentionHours,
                    batchSize: batch
                )
                total += deleted
                if deleted < batch { break }
            }
        } catch {
            if !database.handle(error) {
                logger.error("idempotency purge failed", metadata: ["error": "\(error)"])
            }
        }
        if total > 0 { logger.info("purged idempotency records", metadata: ["count": "\(total)"]) }
        return total
    }
}

/// The expiry sweep's batch size, tuned so that one batch (one transaction, which holds the row locks of its
/// holds' seats until it commits: a rush on those seats waits that long) takes about `target`, measured from
/// the call to its answer. After each batch that expired holds, the next size is what `target` would have
/// held at the batch's time per hold, at most twice the last size, within `minimum...maximum`.
struct SweepBatchSize {
    static let defaultTarget = Duration.milliseconds(5)

    let minimum: Int
    let maximum: Int
    let target: Duration
    private(set) var current: Int

    init(minimum: Int = 10, maximum: Int, target: Duration = defaultTarget, initial: Int = 50) {
        self.minimum = max(1, min(minimum, maximum))
        self.maximum = max(self.minimum, maximum)
        self.target = target
        current = min(max(initial, self.minimum), self.maximum)
    }

    mutating func record(count: Int, took: Duration) {
        guard count > 0, took > .zero else { return }
        // A short batch says how fast holds go, but not that a bigger one would be as fast per hold: grow only
        // after full batches.
        let ideal = Double(count) * (target / took)
        guard ideal.isFinite else { return }
        let next = Int(ideal.rounded(.down))
        if next < current {
            current = max(minimum, next)
        } else if count >= current {
            current = min(maximum, min(2 * current, next))
        }
    }
}
