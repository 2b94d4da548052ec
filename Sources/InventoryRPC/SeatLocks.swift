import Logging
import RedisClient

/// One thread's Redis connection, used for seat locks. (Idempotency lives in the database: decision 0013.)
///
/// Redis is an accelerator, never the arbiter: every method degrades to "skipped" when Redis fails or the
/// shared circuit is open, and the caller goes on with the database alone.
final class SeatLocks {
    enum Acquisition: Equatable {
        case acquired
        /// Seats already locked, each with the hold that locked it.
        case taken([SeatHolder])
        case skipped
    }

    struct SeatHolder: Equatable {
        var seatID: String
        var holdID: String
    }

    /// All or nothing: if any seat is locked, nothing is set and the locked seats come back with their
    /// holders; otherwise every seat is locked for this hold. One script, so no partial state to undo.
    static let acquireScript = RedisScript(
        """
        local taken = {}
        for i, key in ipairs(KEYS) do
          local holder = redis.call('GET', key)
          if holder then
            taken[#taken + 1] = tostring(i)
            taken[#taken + 1] = holder
          end
        end
        if #taken > 0 then return taken end
        for _, key in ipairs(KEYS) do
          redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
        end
        return {}
        """
    )

    /// Deletes only the keys whose value is this hold's id: nobody deletes another hold's lock.
    static let compareAndDeleteScript = RedisScript(
        """
        local deleted = 0
        for _, key in ipairs(KEYS) do
          if redis.call('GET', key) == ARGV[1] then
            redis.call('DEL', key)
            deleted = deleted + 1
          end
        end
        return deleted
        """
    )

    static func lockKey(showtimeID: String, seatID: String) -> String { "lock:{\(showtimeID)}:\(seatID)" }

    private let url: String
    private let commandTimeout: Duration
    private let circuit: RedisCircuit
    private let metrics: ServiceMetrics
    private let owner: String
    private var logger: Logger
    private var connection: RedisConnection?

    init(
        url: String,
        commandTimeout: Duration,
        circuit: RedisCircuit,
        metrics: ServiceMetrics,
        owner: String,
        logger: Logger
    ) {
        self.url = url
        self.commandTimeout = commandTimeout
        self.circuit = circuit
        self.metrics = metrics
        self.owner = owner
        self.logger = logger
    }

    func acquire(showtimeID: String, seatIDs: [String], holdID: String, ttlMilliseconds: Int64) -> Acquisition {
        let keys = seatIDs.map { Self.lockKey(showtimeID: showtimeID, seatID: $0) }
        let reply = withRedis { connection throws(RedisError) in
            try connection.run(Self.acquireScript, keys: keys, arguments: [holdID, String(ttlMilliseconds)])
        }
        guard let reply else { return .skipped }
        guard case .array(let items) = reply else {
            logger.warning("unexpected reply from the seat lock script", metadata: ["reply": "\(reply)"])
            return .skipped
        }
        if items.isEmpty { return .acquired }
        var holders: [SeatHolder] = []
        var index = 0
        while index + 1 < items.count {
            if let position = Int(items[index].text ?? ""), position >= 1, position <= seatIDs.count,
                let holder = items[index + 1].text
            {
                holders.append(SeatHolder(seatID: seatIDs[position - 1], holdID: holder))
            }
            index += 2
        }
        return holders.isEmpty ? .skipped : .taken(holders)
    }

    /// Best effort: a lock left behind expires with its TTL, and the database decides anyway.
    func release(showtimeID: String, seatIDs: [String], holdID: String) {
        guard !seatIDs.isEmpty else { return }
        let keys = seatIDs.map { Self.lockKey(showtimeID: showtimeID, seatID: $0) }
        _ = withRedis { connection throws(RedisError) in
            try connection.run(Self.compareAndDeleteScript, keys: keys, arguments: [holdID])
        }
    }

    /// The locks of many holds at once (the expiry sweep's batch): one compare-and-delete per hold, all of
    /// them in one pipeline (one write, one round trip), after a `SCRIPT LOAD` in the same pipeline so no
    /// `EVALSHA` meets `NOSCRIPT`. Best effort, like `release`: a lock left behind expires with its TTL.
    /// Returns how many compare-and-deletes Redis refused (0 when it was skipped altogether).
    @discardableResult
    func releaseAll(_ holds: [ExpiredHold]) -> Int {
        let script = Self.compareAndDeleteScript
        var commands: [[String]] = [["SCRIPT", "LOAD", script.source]]
        commands.reserveCapacity(holds.count + 1)
        for hold in holds where !hold.seatIDs.isEmpty {
            let keys = hold.seatIDs.map { Self.lockKey(showtimeID: hold.showtimeID, seatID: $0) }
            commands.append(["EVALSHA", script.sha1, String(keys.count)] + keys + [hold.holdID])
        }
        guard commands.count > 1 else { return 0 }
        let replies = withRedis { connection throws(RedisError) in try connection.pipeline(commands) }
        guard let replies else { return 0 }
        let refused = replies.filter { if case .failure = $0 { true } else { false } }
        if let first = refused.first, case .failure(let error) = first {
            logger.warning(
                "Redis refused seat lock deletes of the expiry sweep",
                metadata: ["count": "\(refused.count)", "error": "\(error)"]
            )
        }
        return refused.count
    }

    func close() {
        connection?.close()
        connection = nil
    }

    /// Runs `body` on a live connection, or returns nil (a fallback) when Redis is unusable.
    private func withRedis<T>(_ body: (RedisConnection) throws(RedisError) -> T) -> T? {
        guard circuit.permit() else {
            metrics.redisFallback()
            return nil
        }
        do throws(RedisError) {
            let connection: RedisConnection
            if let existing = self.connection, existing.isConnected {
                connection = existing
            } else {
                self.connection?.close()
                self.connection = nil
                connection = try RedisConnection(url: url, commandTimeout: commandTimeout, logger: logger)
                self.connection = connection
            }
            let result = try body(connection)
            circuit.succeeded()
            return result
        } catch {
            metrics.redisFallback()
            if error.kind == .server {
                // The server answered with an error (e.g. LOADING after a restart): the connection is fine.
                logger.warning("Redis refused a command; continuing without it", metadata: ["error": "\(error)"])
                return nil
            }
            // A timeout may leave a reply in flight on this connection: never reuse it.
            self.connection?.close()
            self.connection = nil
            circuit.failed(error)
            return nil
        }
    }
}

extension RedisValue {
    /// The value as text, for bulk strings, status replies and integers.
    var text: String? {
        switch self {
        case .string(let value), .status(let value): value
        case .integer(let value): String(value)
        default: nil
        }
    }
}
