import Bench
import Foundation

/// One fault the harness injected (a JSON line of `faults.jsonl`, written by faults/run.sh).
public struct FaultRecord: Codable, Sendable, Hashable {
    /// `kill-core`, `kill-core-after-commit`, `kill-relay-unpublished`, `kill-facade`, `rabbitmq-restart`,
    /// `redis-flushall`, `redis-restart`, `redis-pause`, `postgres-restart`, `postgres-crash`; or `crash`
    /// for a process that died without being killed.
    public var kind: String
    public var target: String?
    public var startMs: Int64
    /// When the dependency (or the restarted process) was back.
    public var returnMs: Int64?
    /// Milliseconds from `returnMs` until each process answered `/readyz` 200 again.
    public var ready: [String: Int64]?
    /// Processes that did not become ready within the harness's bound.
    public var notReady: [String]?
    public var detail: String?
    /// `partition-relay-db`: milliseconds from cutting the relay leader's database link until another
    /// core held the leadership; null when none did within the harness's bound.
    public var handoverMs: Int64?
    /// Filled by `Gather` from the outbox, not by the harness: milliseconds from `returnMs` until every
    /// event committed before it was published (0 when all were already).
    public var outboxDrainedMs: Int64?
    /// Cluster kinds (faults/run.sh --cluster): milliseconds from the kill (or the heal) until
    /// `scripts/cluster.sh up` had the node back in its cluster (a replica again after a failover).
    public var rejoinMs: Int64?
    /// A PostgreSQL primary killed (`kill-pg-primary`): the holds the primary had committed just before the
    /// kill (read on it), and how many of those the new primary has once Patroni failed over.
    public var holdsBefore: Int?
    public var holdsAfter: Int?

    public init(
        kind: String,
        target: String? = nil,
        startMs: Int64,
        returnMs: Int64? = nil,
        ready: [String: Int64]? = nil,
        notReady: [String]? = nil,
        detail: String? = nil,
        handoverMs: Int64? = nil,
        outboxDrainedMs: Int64? = nil,
        rejoinMs: Int64? = nil,
        holdsBefore: Int? = nil,
        holdsAfter: Int? = nil
    ) {
        self.kind = kind
        self.target = target
        self.startMs = startMs
        self.returnMs = returnMs
        self.ready = ready
        self.notReady = notReady
        self.detail = detail
        self.handoverMs = handoverMs
        self.outboxDrainedMs = outboxDrainedMs
        self.rejoinMs = rejoinMs
        self.holdsBefore = holdsBefore
        self.holdsAfter = holdsAfter
    }
}

/// What the checker found, by kind; `passed` means no anomaly of any kind.
public struct FaultReport: Codable, Sendable {
    public struct Recovery: Codable, Sendable {
        public var count: Int
        public var measured: Int
        public var minMs: Int64?
        public var p50Ms: Int64?
        public var maxMs: Int64?
        public var processReadyMaxMs: Int64?
        /// From the return until every event committed before it was published (the outbox lag back to 0).
        public var outboxP50Ms: Int64?
        public var outboxMaxMs: Int64?
        /// `partition-relay-db`: from the cut until another core led the relay.
        public var handoverP50Ms: Int64?
        public var handoverMaxMs: Int64?
        /// From the return until the first hold answered ok that the database decided after it (its
        /// `decided_at`, else its transaction's start): unlike the first reply, never a hold decided before
        /// the fault and answered after it.
        public var committedMinMs: Int64?
        public var committedP50Ms: Int64?
        public var committedMaxMs: Int64?
        /// Cluster kinds: from the fault until the node was back in its cluster.
        public var rejoinP50Ms: Int64?
        public var rejoinMaxMs: Int64?
    }

    /// One PostgreSQL primary failover, "every committed hold survives": the holds answered `ok` to a
    /// client before the primary was killed, and how many of them the database has at the end (by then on
    /// the new primary, or a later one); and the harness's own count, read on the old primary just before
    /// the kill and on the new one once it took over.
    public struct Failover: Codable, Sendable {
        public var kind: String
        public var startMs: Int64
        public var answeredOkBefore: Int
        public var answeredOkPresent: Int
        public var holdsBefore: Int?
        public var holdsAfter: Int?
    }

    public struct Events: Codable, Sendable {
        public var committed = 0
        public var receivedDistinct = 0
        public var deliveries = 0
        public var duplicates = 0
        public var lost = 0
        public var unexpected = 0
        public var unpublishedAtEnd = 0
    }

    public struct Idempotency: Codable, Sendable {
        public var keys = 0
        public var retriedKeys = 0
        public var retriedKeysWithHold = 0
        /// Keys whose hold was created during an attempt that got no answer (timeout, transport, dropped on
        /// purpose): the change committed and the reply was lost, which a retry with the key recovered.
        public var committedWithoutReply = 0
        public var disconnectedFirstAttempts = 0
        public var unresolvedKeys = 0
        /// Keys refused (e.g. `SEAT_UNAVAILABLE`) whose earlier, abandoned attempt was processed later and
        /// created a hold. Since a key keeps its first answer, refusals included (rule 9), each is a
        /// `late-duplicate` anomaly.
        public var lateDuplicateHolds = 0
        public var lateDuplicateExamples: [String] = []
    }

    public var operations: [String: [String: Int]] = [:]
    public var faults: [String: Int] = [:]
    public var anomalies: [String: Int] = [:]
    public var examples: [String: [String]] = [:]
    public var recovery: [String: Recovery] = [:]
    public var failovers: [Failover] = []
    public var events = Events()
    public var idempotency = Idempotency()
    public var holdsInDatabase = 0
    public var seatsChecked = 0
    public var historySkippedLines = 0
    public var passed: Bool { anomalies.values.allSatisfy { $0 == 0 } }

    mutating func anomaly(_ kind: String, _ example: String) {
        anomalies[kind, default: 0] += 1
        if examples[kind, default: []].count < 10 { examples[kind, default: []].append(example) }
    }

    /// Every kind of anomaly the checker looks for, so a clean report lists each with 0.
    public static let anomalyKinds = [
        "double-hold", "client-double-hold", "sold-twice", "held-after-sale", "seat-state", "won-hold-missing",
        "outbox", "missing-event", "uncommitted-event", "event-order", "undecodable-event", "lost-event",
        "unexpected-event", "unpublished-event", "idempotency-two-holds", "idempotency-mismatch",
        "idempotency-lost-reply", "stuck-seat", "stuck-hold", "availability-disagrees", "no-recovery",
        "no-reconnect", "process-crash", "seat-versions", "late-duplicate", "committed-after-deadline",
        "no-handover", "failover-lost-hold",
    ]

    /// The fault kinds that kill the PostgreSQL primary: Patroni fails over to the synchronous standby.
    public static let primaryFailoverKinds: Set<String> = ["kill-pg-primary"]

    public func text() -> String {
        var lines: [String] = []
        let verdict = passed ? "PASS: no anomaly" : "FAIL: \(anomalies.values.reduce(0, +)) anomalies"
        lines.append("fault run report: \(verdict)")
        lines.append("operations (result counts per operation):")
        for (op, results) in operations.sorted(by: { $0.key < $1.key }) {
            let total = results.values.reduce(0, +)
            lines.append(
                "  \(op): \(total) — "
                    + results.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            )
        }
        let doubles = faults["double", default: 0]
        lines.append(
            "faults: \(faults.values.reduce(0, +)) injected"
                + (doubles > 0 ? " (\(doubles) of them double: two faults at once)" : "")
        )
        for (kind, count) in faults.sorted(by: { $0.key < $1.key }) {
            var line = "  \(kind): \(count)"
            if let recovery = recovery[kind] {
                line += "; first successful hold after the return: "
                if let p50 = recovery.p50Ms, let max = recovery.maxMs {
                    if let min = recovery.minMs { line += "min \(min) ms, " }
                    line += "p50 \(p50) ms, max \(max) ms (\(recovery.measured) measured)"
                } else {
                    line += "not measured"
                }
                if let min = recovery.committedMinMs, let p50 = recovery.committedP50Ms,
                    let max = recovery.committedMaxMs
                {
                    line += "; first hold decided after it: min \(min) ms, p50 \(p50) ms, max \(max) ms"
                }
                if let ready = recovery.processReadyMaxMs { line += "; every process ready again within \(ready) ms" }
                if let p50 = recovery.outboxP50Ms, let max = recovery.outboxMaxMs {
                    line += "; outbox lag back to 0: p50 \(p50) ms, max \(max) ms"
                }
                if let p50 = recovery.handoverP50Ms, let max = recovery.handoverMaxMs {
                    line += "; relay leadership passed on after the cut: p50 \(p50) ms, max \(max) ms"
                }
                if let p50 = recovery.rejoinP50Ms, let max = recovery.rejoinMaxMs {
                    line += "; node back in its cluster: p50 \(p50) ms, max \(max) ms"
                }
            }
            lines.append(line)
        }
        if !failovers.isEmpty {
            lines.append("primary failovers (every committed hold must survive):")
            for failover in failovers {
                var line =
                    "  \(failover.kind) at \(failover.startMs): \(failover.answeredOkPresent) of the "
                    + "\(failover.answeredOkBefore) holds answered ok before it are in the database"
                if let before = failover.holdsBefore, let after = failover.holdsAfter {
                    line += "; \(after) of the \(before) holds committed on the old primary are on the new one"
                }
                lines.append(line)
            }
        }
        lines.append(
            "events: \(events.committed) committed changes, \(events.receivedDistinct) distinct received in "
                + "\(events.deliveries) deliveries (\(events.duplicates) duplicates, de-duplicated); lost \(events.lost), "
                + "unexpected \(events.unexpected), unpublished at the end \(events.unpublishedAtEnd)"
        )
        lines.append(
            "idempotency: \(idempotency.keys) keys, \(idempotency.retriedKeys) retried (\(idempotency.retriedKeysWithHold) "
                + "ended with a hold), \(idempotency.committedWithoutReply) committed during an attempt that got no reply, "
                + "\(idempotency.disconnectedFirstAttempts) clients disconnected before the reply, "
                + "\(idempotency.unresolvedKeys) keys unresolved when the clients stopped, "
                + "\(idempotency.lateDuplicateHolds) refused keys whose abandoned earlier attempt created a hold later"
        )
        for example in idempotency.lateDuplicateExamples { lines.append("  late duplicate: \(example)") }
        lines.append("database: \(holdsInDatabase) holds; \(seatsChecked) seats checked after TTL + a sweep")
        lines.append("anomalies:")
        for kind in Self.anomalyKinds {
            lines.append("  \(kind): \(anomalies[kind] ?? 0)")
        }
        for (kind, list) in examples.sorted(by: { $0.key < $1.key }) {
            for example in list { lines.append("  [\(kind)] \(example)") }
        }
        return lines.joined(separator: "\n")
    }
}

/// The seat rows the stuck-seat check reads after TTL + one sweep, and the availability the core answers.
public struct FinalSeat: Sendable, Hashable {
    public var showtimeID: String
    public var seatID: String
    public var state: String
    public var holdID: String?
    public var availabilityState: String?
    /// The seat's version in the core's availability answer (rule 8).
    public var availabilityVersion: Int64?

    public init(
        showtimeID: String,
        seatID: String,
        state: String,
        holdID: String?,
        availabilityState: String?,
        availabilityVersion: Int64? = nil
    ) {
        self.showtimeID = showtimeID
        self.seatID = seatID
        self.state = state
        self.holdID = holdID
        self.availabilityState = availabilityState
        self.availabilityVersion = availabilityVersion
    }
}

public struct CheckInput: Sendable {
    public var history: [Attempt]
    public var historySkipped: Int
    public var faults: [FaultRecord]
    public var snapshot: DatabaseSnapshot
    /// (user, idempotency key) → hold id, from the idempotency records (and the holds table's legacy keys).
    public var keyedHolds: [String: String]
    /// Hold id → when its transaction decided, just before its commit (Unix epoch ms, database clock), where
    /// the core records it (`idempotency_keys.decided_at`); otherwise the check uses `created_at`, when the
    /// transaction began. Either is at or before the commit.
    public var decidedMs: [String: Int64] = [:]
    public var events: [ReceivedEvent]
    public var undecodableEvents: [String]
    public var unpublishedAtEnd: Int
    public var finalSeats: [FinalSeat]
    /// How long after a dependency's return a first successful hold may take before it counts as none.
    public var recoveryBound: Int64

    public init(
        history: [Attempt],
        historySkipped: Int = 0,
        faults: [FaultRecord],
        snapshot: DatabaseSnapshot,
        keyedHolds: [String: String],
        decidedMs: [String: Int64] = [:],
        events: [ReceivedEvent],
        undecodableEvents: [String] = [],
        unpublishedAtEnd: Int = 0,
        finalSeats: [FinalSeat],
        recoveryBound: Int64 = 60_000
    ) {
        self.history = history
        self.historySkipped = historySkipped
        self.faults = faults
        self.snapshot = snapshot
        self.keyedHolds = keyedHolds
        self.decidedMs = decidedMs
        self.events = events
        self.undecodableEvents = undecodableEvents
        self.unpublishedAtEnd = unpublishedAtEnd
        self.finalSeats = finalSeats
        self.recoveryBound = recoveryBound
    }
}

public enum HistoryChecker {
    static func keyOf(user: String, key: String) -> String { "\(user)\u{1F}\(key)" }

    public static func check(_ input: CheckInput) -> FaultReport {
        var report = FaultReport()
        report.historySkippedLines = input.historySkipped
        report.holdsInDatabase = input.snapshot.holds.count
        for attempt in input.history {
            let result = attempt.result == "error" ? "error \(attempt.code ?? "?")" : attempt.result
            report.operations[attempt.op, default: [:]][result, default: 0] += 1
        }
        for kind in FaultReport.anomalyKinds { report.anomalies[kind] = 0 }

        // 1. The database's own history (holds, seats, outbox) and the events, by the benchmark's verifier;
        //    with rule 8: the events applied per seat by version equal the rows and the core's answers.
        var answered: [String: DatabaseSnapshot.SeatVersion] = [:]
        for seat in input.finalSeats {
            guard let state = seat.availabilityState, let version = seat.availabilityVersion else { continue }
            answered["\(seat.showtimeID)/\(seat.seatID)"] = DatabaseSnapshot.SeatVersion(state: state, version: version)
        }
        let summary = Verifier.check(
            input.snapshot,
            wonHolds: nil,
            events: input.events,
            undecodableEvents: input.undecodableEvents,
            answered: answered
        )
        for violation in summary.violations { report.anomaly(violation.kind.rawValue, violation.message) }

        // After TTL + one sweep no hold may still be active (the sweep marks every dead hold expired).
        for hold in input.snapshot.holds where hold.status == "active" {
            report.anomaly(
                "stuck-hold",
                "hold \(hold.holdID) still active after TTL + a sweep (expires \(hold.expiresAt / 1000) ms)"
            )
        }

        // Every hold a client was told it won is in the database, as it was told.
        let holdsByID = Dictionary(
            input.snapshot.holds.map { ($0.holdID, $0) },
            uniquingKeysWith: { first, _ in first }
        )
        var checkedWins = Set<String>()
        for attempt in input.history where attempt.op == "hold" && attempt.result == "ok" {
            guard let holdID = attempt.holdId, checkedWins.insert(holdID).inserted else { continue }
            guard let hold = holdsByID[holdID] else {
                report.anomaly(
                    "won-hold-missing",
                    "hold \(holdID) answered to \(attempt.client) is not in the database"
                )
                continue
            }
            if hold.seatIDs != attempt.seatIds || hold.userID != attempt.userId || hold.showtimeID != attempt.showtimeId
            {
                report.anomaly(
                    "won-hold-missing",
                    "hold \(holdID) answered for \(attempt.showtimeId) \(attempt.seatIds) of \(attempt.userId); the database "
                        + "has \(hold.showtimeID) \(hold.seatIDs) of \(hold.userID)"
                )
            }
        }

        // 2. Events by id: every committed change delivered at least once, nothing else; duplicates counted.
        let committed = Set(input.snapshot.outbox.map(\.eventID))
        let received = Set(input.events.map(\.eventID))
        report.events.committed = committed.count
        report.events.receivedDistinct = received.count
        report.events.deliveries = input.events.count
        report.events.duplicates = input.events.count - received.count
        for lost in committed.subtracting(received).sorted() {
            report.events.lost += 1
            report.anomaly("lost-event", "event \(lost) committed in the outbox, never delivered")
        }
        for unexpected in received.subtracting(committed).sorted() {
            report.events.unexpected += 1
            report.anomaly("unexpected-event", "event \(unexpected) delivered, not in the outbox")
        }
        report.events.unpublishedAtEnd = input.unpublishedAtEnd
        if input.unpublishedAtEnd > 0 {
            report.anomaly("unpublished-event", "\(input.unpublishedAtEnd) outbox rows still unpublished at the end")
        }

        checkClientIntervals(input.history, into: &report)
        let createdMs = Dictionary(
            input.snapshot.holds.map { ($0.holdID, $0.createdAt / 1000) },
            uniquingKeysWith: { first, _ in first }
        )
        checkIdempotency(input.history, keyedHolds: input.keyedHolds, createdMs: createdMs, into: &report)
        checkDeadlines(
            input.history,
            keyedHolds: input.keyedHolds,
            commitMs: createdMs.merging(input.decidedMs) { _, decided in decided },
            into: &report
        )
        checkFinalSeats(input.finalSeats, into: &report)
        checkRecovery(
            input.history,
            faults: input.faults,
            bound: input.recoveryBound,
            commitMs: createdMs.merging(input.decidedMs) { _, decided in decided },
            into: &report
        )
        checkFailovers(
            input.history,
            faults: input.faults,
            holdIDs: Set(input.snapshot.holds.map(\.holdID)),
            into: &report
        )
        return report
    }

    /// "Every committed hold survives a primary failover", per failover: each hold answered `ok` before
    /// the primary was killed is in the database at the end, and the harness's count of the old primary's
    /// holds is whole on the new one. A hold missing is a `failover-lost-hold` (also a `won-hold-missing`
    /// when a client had been told it won it).
    static func checkFailovers(
        _ history: [Attempt],
        faults: [FaultRecord],
        holdIDs: Set<String>,
        into report: inout FaultReport
    ) {
        let wins = history.filter { $0.op == "hold" && $0.result == "ok" }
        for fault in faults where FaultReport.primaryFailoverKinds.contains(fault.kind) {
            let before = Set(wins.filter { $0.completeMs < fault.startMs }.compactMap(\.holdId))
            let missing = before.subtracting(holdIDs)
            report.failovers.append(
                FaultReport.Failover(
                    kind: fault.kind,
                    startMs: fault.startMs,
                    answeredOkBefore: before.count,
                    answeredOkPresent: before.count - missing.count,
                    holdsBefore: fault.holdsBefore,
                    holdsAfter: fault.holdsAfter
                )
            )
            for holdID in missing.sorted() {
                report.anomaly(
                    "failover-lost-hold",
                    "hold \(holdID) was answered ok before \(fault.kind) at \(fault.startMs) and is not in the database"
                )
            }
            if let holdsBefore = fault.holdsBefore {
                if let holdsAfter = fault.holdsAfter {
                    if holdsAfter < holdsBefore {
                        report.anomaly(
                            "failover-lost-hold",
                            "\(fault.kind) at \(fault.startMs): \(holdsBefore - holdsAfter) of the \(holdsBefore) holds "
                                + "committed on the old primary are not on the new one"
                        )
                    }
                } else {
                    report.anomaly(
                        "failover-lost-hold",
                        "\(fault.kind) at \(fault.startMs): the new primary could not be read after the failover"
                    )
                }
            }
        }
    }

    /// The clients' own proof of a double hold, independent of the database: a hold is surely live from
    /// its first `active` reply until the earliest of its `expiresAt` and its first release attempt (a
    /// purchased hold keeps its seats for ever). Two holds on one seat surely live at one instant are a
    /// double hold whatever the database says.
    static func checkClientIntervals(_ history: [Attempt], into report: inout FaultReport) {
        struct Interval {
            var holdID: String
            var showtimeID: String
            var seats: [String]
            var start: Int64
            var end: Int64
        }
        var starts: [String: Attempt] = [:]
        var releaseInvoked: [String: Int64] = [:]
        var purchased = Set<String>()
        for attempt in history {
            guard let holdID = attempt.holdId else { continue }
            switch attempt.op {
            case "hold" where attempt.result == "ok" && attempt.status == "active":
                if let existing = starts[holdID], existing.completeMs <= attempt.completeMs { continue }
                starts[holdID] = attempt
            case "release":
                releaseInvoked[holdID] = min(releaseInvoked[holdID] ?? .max, attempt.invokeMs)
            case "purchase" where attempt.result == "ok" && attempt.status == "purchased":
                purchased.insert(holdID)
            default: break
            }
        }
        var bySeat: [String: [Interval]] = [:]
        for (holdID, attempt) in starts {
            let end: Int64 =
                purchased.contains(holdID)
                ? .max : min(attempt.expiresAtMs ?? attempt.completeMs, releaseInvoked[holdID] ?? .max)
            guard end > attempt.completeMs else { continue }
            let interval = Interval(
                holdID: holdID,
                showtimeID: attempt.showtimeId,
                seats: attempt.seatIds,
                start: attempt.completeMs,
                end: end
            )
            for seat in attempt.seatIds { bySeat["\(attempt.showtimeId)/\(seat)", default: []].append(interval) }
        }
        for (seat, intervals) in bySeat.sorted(by: { $0.key < $1.key }) where intervals.count > 1 {
            let ordered = intervals.sorted { $0.start < $1.start }
            var open: [Interval] = []
            for interval in ordered {
                open.removeAll { $0.end <= interval.start }
                for other in open {
                    report.anomaly(
                        "client-double-hold",
                        "seat \(seat): hold \(other.holdID) surely live [\(other.start), \(other.end == .max ? "sold" : String(other.end))) "
                            + "and hold \(interval.holdID) surely live from \(interval.start)"
                    )
                }
                open.append(interval)
            }
        }
    }

    /// `keyedHolds`: (user, key) → hold id in the database; `createdMs`: hold id → its `created_at`.
    static func checkIdempotency(
        _ history: [Attempt],
        keyedHolds: [String: String],
        createdMs: [String: Int64],
        into report: inout FaultReport
    ) {
        var byKey: [String: [Attempt]] = [:]
        for attempt in history where attempt.op == "hold" {
            guard let key = attempt.key else { continue }
            byKey[keyOf(user: attempt.userId, key: key), default: []].append(attempt)
        }
        report.idempotency.keys = byKey.count
        for (key, attempts) in byKey {
            let ordered = attempts.sorted { $0.attempt < $1.attempt }
            let readable = key.replacingOccurrences(of: "\u{1F}", with: " key ")
            let holdIDs = Set(ordered.filter { $0.result == "ok" }.compactMap(\.holdId))
            let inDatabase = keyedHolds[key]
            if ordered.count > 1 {
                report.idempotency.retriedKeys += 1
                if !holdIDs.isEmpty { report.idempotency.retriedKeysWithHold += 1 }
            }
            if ordered.first?.result == "disconnected" { report.idempotency.disconnectedFirstAttempts += 1 }
            if holdIDs.count > 1 {
                report.anomaly(
                    "idempotency-two-holds",
                    "user \(readable) was answered with holds \(holdIDs.sorted().joined(separator: ", "))"
                )
            }
            if let answered = holdIDs.first, holdIDs.count == 1, inDatabase != answered {
                report.anomaly(
                    "idempotency-mismatch",
                    "user \(readable) was answered with hold \(answered); the database has \(inDatabase ?? "none")"
                )
            }
            // The hold's transaction began (created_at) inside an attempt that got no answer: that attempt
            // committed and its reply was lost; a retry with the key must have been given this very hold.
            if let inDatabase, let created = createdMs[inDatabase],
                ordered.contains(where: {
                    ["timeout", "transport", "disconnected"].contains($0.result) && $0.invokeMs <= created
                        && created <= $0.completeMs
                })
            {
                report.idempotency.committedWithoutReply += 1
            }
            guard let last = ordered.last else { continue }
            let definitive = last.result == "ok" || (last.result == "error" && !retryable(last.code))
            if !definitive {
                report.idempotency.unresolvedKeys += 1
            } else if last.result == "error", let inDatabase {
                // The key's final answer was a refusal, yet a hold exists for it. If the hold's transaction
                // began after that answer, an earlier attempt (one the client hung up on, still within its
                // deadline) reached a worker after its retry and succeeded: the key did not keep its first
                // answer (rule 9; decision 0013), a `late-duplicate`. If it began before, the core refused a
                // duplicate of a hold that already existed: `idempotency-lost-reply`.
                let created = createdMs[inDatabase] ?? .max
                let attempts = ordered.map { $0.code ?? $0.result }.joined(separator: ", ")
                if created > last.completeMs {
                    report.idempotency.lateDuplicateHolds += 1
                    report.anomaly(
                        "late-duplicate",
                        "user \(readable): answered \(last.code ?? "?") at \(last.completeMs), yet hold \(inDatabase) was "
                            + "created at \(created), after (\(attempts))"
                    )
                    if report.idempotency.lateDuplicateExamples.count < 5 {
                        report.idempotency.lateDuplicateExamples.append(
                            "user \(readable): answered \(last.code ?? "?") at \(last.completeMs), hold \(inDatabase) "
                                + "created at \(created) (\(attempts))"
                        )
                    }
                } else {
                    report.anomaly(
                        "idempotency-lost-reply",
                        "user \(readable): answered \(last.code ?? "?") at \(last.completeMs), yet hold \(inDatabase) was "
                            + "created at \(created), before (\(ordered.count) attempts: \(attempts))"
                    )
                }
            }
        }
    }

    static func retryable(_ code: String?) -> Bool {
        ["IDEMPOTENCY_KEY_IN_USE", "SERVICE_UNAVAILABLE", "UPSTREAM_TIMEOUT", "INTERNAL"].contains(code ?? "")
    }

    /// After TTL + one sweep: no seat is held, and the core's availability agrees with the rows.
    static func checkFinalSeats(_ seats: [FinalSeat], into report: inout FaultReport) {
        report.seatsChecked = seats.count
        for seat in seats {
            let name = "\(seat.showtimeID)/\(seat.seatID)"
            if seat.state == "held" {
                report.anomaly("stuck-seat", "seat \(name) still held by \(seat.holdID ?? "?") after TTL + a sweep")
            }
            if let answered = seat.availabilityState,
                answered != (seat.state == "purchased" ? "purchased" : "available")
            {
                report.anomaly(
                    "availability-disagrees",
                    "seat \(name): availability says \(answered), the row is \(seat.state)"
                )
            }
        }
    }

    /// `commitMs`: hold id → when the database decided it (optional: the sharper measure of recovery).
    static func checkRecovery(
        _ history: [Attempt],
        faults: [FaultRecord],
        bound: Int64,
        commitMs: [String: Int64] = [:],
        into report: inout FaultReport
    ) {
        let wins = history.filter { $0.op == "hold" && $0.result == "ok" }.map(\.completeMs).sorted()
        let decidedWins = Set(history.filter { $0.op == "hold" && $0.result == "ok" }.compactMap(\.holdId))
            .compactMap { commitMs[$0] }.sorted()
        var committed: [String: [Int64]] = [:]
        let lastInvoke = history.map(\.invokeMs).max() ?? 0
        var samples: [String: [Int64]] = [:]
        var readyMax: [String: Int64] = [:]
        var drained: [String: [Int64]] = [:]
        var handovers: [String: [Int64]] = [:]
        var rejoins: [String: [Int64]] = [:]
        for fault in faults {
            if fault.kind == "crash" {
                report.anomaly("process-crash", "\(fault.target ?? "?") exited on its own: \(fault.detail ?? "")")
                continue
            }
            report.faults[fault.kind, default: 0] += 1
            var entry = report.recovery[fault.kind] ?? FaultReport.Recovery(count: 0, measured: 0)
            entry.count += 1
            report.recovery[fault.kind] = entry
            for name in fault.notReady ?? [] {
                report.anomaly("no-reconnect", "\(name) not ready again after \(fault.kind) at \(fault.startMs)")
            }
            if let ready = fault.ready?.values.max() { readyMax[fault.kind] = max(readyMax[fault.kind] ?? 0, ready) }
            if let ms = fault.outboxDrainedMs { drained[fault.kind, default: []].append(ms) }
            if let ms = fault.rejoinMs { rejoins[fault.kind, default: []].append(ms) }
            if fault.kind == "partition-relay-db" {
                if let ms = fault.handoverMs {
                    handovers[fault.kind, default: []].append(ms)
                } else {
                    report.anomaly(
                        "no-handover",
                        "the relay leadership did not pass on after \(fault.target ?? "?")'s database link was cut at \(fault.startMs)"
                    )
                }
            }
            guard let back = fault.returnMs else { continue }
            if let first = decidedWins.first(where: { $0 >= back }), first - back <= bound {
                committed[fault.kind, default: []].append(first - back)
            }
            var low = 0
            var high = wins.count
            while low < high {
                let middle = (low + high) / 2
                if wins[middle] < back { low = middle + 1 } else { high = middle }
            }
            if low < wins.count, wins[low] - back <= bound {
                samples[fault.kind, default: []].append(wins[low] - back)
            } else if lastInvoke - back > bound {
                report.anomaly("no-recovery", "no successful hold within \(bound) ms after \(fault.kind) at \(back)")
            }
        }
        for (kind, var entry) in report.recovery {
            let sorted = (samples[kind] ?? []).sorted()
            entry.measured = sorted.count
            entry.minMs = sorted.first
            let decided = (committed[kind] ?? []).sorted()
            entry.committedMinMs = decided.first
            entry.committedP50Ms = decided.isEmpty ? nil : decided[decided.count / 2]
            entry.committedMaxMs = decided.last
            entry.p50Ms = sorted.isEmpty ? nil : sorted[sorted.count / 2]
            entry.maxMs = sorted.last
            entry.processReadyMaxMs = readyMax[kind]
            let outbox = (drained[kind] ?? []).sorted()
            entry.outboxP50Ms = outbox.isEmpty ? nil : outbox[outbox.count / 2]
            entry.outboxMaxMs = outbox.last
            let handover = (handovers[kind] ?? []).sorted()
            entry.handoverP50Ms = handover.isEmpty ? nil : handover[handover.count / 2]
            entry.handoverMaxMs = handover.last
            let rejoin = (rejoins[kind] ?? []).sorted()
            entry.rejoinP50Ms = rejoin.isEmpty ? nil : rejoin[rejoin.count / 2]
            entry.rejoinMaxMs = rejoin.last
            report.recovery[kind] = entry
        }
    }
}
