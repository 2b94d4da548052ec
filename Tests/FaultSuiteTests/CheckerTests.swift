import Testing

@testable import Bench
@testable import FaultSuite

/// The checks that do not need a database: each is shown to catch what it guards against, and to stay
/// quiet on a correct history.
@Suite("History checker")
struct CheckerTests {
    static func hold(
        _ client: String,
        _ holdID: String,
        seats: [String],
        at complete: Int64,
        expires: Int64,
        key: String? = nil,
        attempt: Int = 1,
        result: String = "ok",
        code: String? = nil
    ) -> Attempt {
        Attempt(
            client: client,
            transport: "amqp",
            op: "hold",
            userId: "u-\(client)",
            showtimeId: "flt-0",
            seatIds: seats,
            key: key ?? "\(client)-\(holdID)",
            holdId: result == "ok" ? holdID : nil,
            attempt: attempt,
            invokeMs: complete - 5,
            completeMs: complete,
            result: result,
            code: code,
            status: result == "ok" ? "active" : nil,
            expiresAtMs: result == "ok" ? expires : nil
        )
    }

    static func release(_ client: String, _ holdID: String, at invoke: Int64) -> Attempt {
        Attempt(
            client: client,
            transport: "amqp",
            op: "release",
            userId: "u-\(client)",
            showtimeId: "flt-0",
            seatIds: ["s1"],
            holdId: holdID,
            attempt: 1,
            invokeMs: invoke,
            completeMs: invoke + 3,
            result: "ok",
            status: "released"
        )
    }

    @Test("two holds of one seat both surely live at one instant are a client-side double hold")
    func overlappingHolds() {
        var report = FaultReport()
        HistoryChecker.checkClientIntervals(
            [
                Self.hold("a1", "h1", seats: ["s1", "s2"], at: 1_000, expires: 4_000),
                Self.hold("a2", "h2", seats: ["s2"], at: 2_000, expires: 5_000),
            ],
            into: &report
        )
        #expect(report.anomalies["client-double-hold"] == 1)
    }

    @Test("a hold after the previous one's release or expiry, or on another seat, is not a double hold")
    func sequentialHolds() {
        var report = FaultReport()
        HistoryChecker.checkClientIntervals(
            [
                Self.hold("a1", "h1", seats: ["s1"], at: 1_000, expires: 4_000),
                Self.release("a1", "h1", at: 1_500),
                Self.hold("a2", "h2", seats: ["s1"], at: 1_600, expires: 4_600),
                Self.hold("a3", "h3", seats: ["s1"], at: 4_600, expires: 7_600),
                Self.hold("a4", "h4", seats: ["s9"], at: 4_700, expires: 7_700),
            ],
            into: &report
        )
        #expect(report.anomalies["client-double-hold", default: 0] == 0)
    }

    @Test("a retried key answered with two hold ids, or a hold created for a key whose final answer was an error")
    func idempotency() {
        let history = [
            Self.hold("a1", "h1", seats: ["s1"], at: 1_000, expires: 4_000, key: "k1"),
            Self.hold("a1", "h2", seats: ["s1"], at: 1_100, expires: 4_100, key: "k1", attempt: 2),
            Self.hold("a2", "x", seats: ["s2"], at: 1_000, expires: 0, key: "k2", result: "timeout"),
            Self.hold(
                "a2",
                "x",
                seats: ["s2"],
                at: 2_000,
                expires: 0,
                key: "k2",
                attempt: 2,
                result: "error",
                code: "SEAT_UNAVAILABLE"
            ),
            // Hung up on, refused on retry, and the abandoned first attempt created the hold afterwards.
            Self.hold("a3", "x", seats: ["s3"], at: 3_001, expires: 0, key: "k3", result: "disconnected"),
            Self.hold(
                "a3",
                "x",
                seats: ["s3"],
                at: 3_010,
                expires: 0,
                key: "k3",
                attempt: 2,
                result: "error",
                code: "SEAT_UNAVAILABLE"
            ),
        ]
        var report = FaultReport()
        HistoryChecker.checkIdempotency(
            history,
            keyedHolds: [
                HistoryChecker.keyOf(user: "u-a1", key: "k1"): "h1",
                HistoryChecker.keyOf(user: "u-a2", key: "k2"): "h3",
                HistoryChecker.keyOf(user: "u-a3", key: "k3"): "h4",
            ],
            createdMs: ["h3": 997, "h4": 3_050],
            into: &report
        )
        #expect(report.anomalies["idempotency-two-holds"] == 1)
        #expect(report.anomalies["idempotency-lost-reply"] == 1)
        #expect(report.idempotency.retriedKeys == 3)
        #expect(report.idempotency.committedWithoutReply == 1)
        #expect(report.idempotency.lateDuplicateHolds == 1)
        // A key keeps its first answer, refusals included (rule 9): the late duplicate is an anomaly.
        #expect(report.anomalies["late-duplicate"] == 1)
    }

    static func deadlined(
        _ client: String,
        invoke: Int64,
        deadline: Int64?,
        attempt: Int = 1,
        result: String
    ) -> Attempt {
        var attempt = Self.hold(
            client,
            "x",
            seats: ["s1"],
            at: invoke + 5,
            expires: 0,
            key: "k",
            attempt: attempt,
            result: result
        )
        attempt.deadlineMs = deadline
        return attempt
    }

    @Test(
        "a hold that committed after the deadline of every attempt that could have made it is 'committed after the caller's deadline'"
    )
    func committedAfterDeadline() {
        let history = [
            // Timed out at its deadline (3,000); the hold committed at 4,200: nobody was waiting any more.
            Self.deadlined("late", invoke: 1_000, deadline: 3_000, result: "timeout"),
            // Timed out too, but its retry (deadline 6,000) was in time for the commit at 4,200.
            Self.deadlined("retried", invoke: 1_000, deadline: 3_000, result: "timeout"),
            Self.deadlined("retried", invoke: 3_100, deadline: 6_000, attempt: 2, result: "ok"),
            // Committed within its deadline.
            Self.deadlined("timely", invoke: 1_000, deadline: 3_000, result: "ok"),
            // Over HTTP without a known deadline: undecidable, never an anomaly.
            Self.deadlined("unknown", invoke: 1_000, deadline: nil, result: "timeout"),
        ]
        let keyed = Dictionary(
            uniqueKeysWithValues: ["late", "retried", "timely", "unknown"].map {
                (HistoryChecker.keyOf(user: "u-\($0)", key: "k"), "h-\($0)")
            }
        )
        var report = FaultReport()
        HistoryChecker.checkDeadlines(
            history,
            keyedHolds: keyed,
            commitMs: ["h-late": 4_200, "h-retried": 4_200, "h-timely": 2_900, "h-unknown": 9_000],
            into: &report
        )
        #expect(report.anomalies["committed-after-deadline"] == 1)
        #expect(report.examples["committed-after-deadline"]?.first?.contains("h-late") == true)
    }

    @Test("a seat still held after TTL + a sweep is stuck; availability must agree with the rows")
    func finalSeats() {
        var report = FaultReport()
        HistoryChecker.checkFinalSeats(
            [
                FinalSeat(showtimeID: "flt-0", seatID: "s1", state: "held", holdID: "h1", availabilityState: "held"),
                FinalSeat(
                    showtimeID: "flt-0",
                    seatID: "s2",
                    state: "available",
                    holdID: nil,
                    availabilityState: "held"
                ),
                FinalSeat(
                    showtimeID: "flt-0",
                    seatID: "s3",
                    state: "purchased",
                    holdID: "h2",
                    availabilityState: "purchased"
                ),
            ],
            into: &report
        )
        #expect(report.anomalies["stuck-seat"] == 1)
        #expect(report.anomalies["availability-disagrees"] == 2)
    }

    @Test("recovery is the time from the dependency's return to the first successful hold")
    func recovery() {
        let history = [
            Self.hold("a1", "h1", seats: ["s1"], at: 1_000, expires: 4_000),
            Self.hold("a1", "h2", seats: ["s2"], at: 10_250, expires: 14_000),
            Self.hold("a1", "x", seats: ["s3"], at: 200_000, expires: 0, result: "error", code: "SEAT_UNAVAILABLE"),
        ]
        let faults = [
            FaultRecord(kind: "redis-restart", startMs: 9_000, returnMs: 10_000, ready: ["core1": 40]),
            FaultRecord(kind: "postgres-restart", startMs: 11_000, returnMs: 12_000, notReady: ["core2"]),
            FaultRecord(kind: "crash", target: "core1", startMs: 13_000),
        ]
        var report = FaultReport()
        HistoryChecker.checkRecovery(history, faults: faults, bound: 60_000, into: &report)
        #expect(report.recovery["redis-restart"]?.p50Ms == 250)
        #expect(report.recovery["redis-restart"]?.processReadyMaxMs == 40)
        #expect(report.anomalies["no-recovery"] == 1)
        #expect(report.anomalies["no-reconnect"] == 1)
        #expect(report.anomalies["process-crash"] == 1)
        #expect(report.faults == ["redis-restart": 1, "postgres-restart": 1])
    }

    @Test("recovery by decision time: a hold decided before the fault and answered after it does not count")
    func recoveryByDecision() {
        let history = [
            // Decided at 9,990 (before the kill at 10,000), answered at 10,013: the first reply after the kill.
            Self.hold("a1", "h1", seats: ["s1"], at: 10_013, expires: 14_000),
            // Decided at 20,500, answered at 20,600: the first hold the service decided without the node.
            Self.hold("a2", "h2", seats: ["s2"], at: 20_600, expires: 24_000),
        ]
        let faults = [FaultRecord(kind: "kill-pg-primary", startMs: 10_000, returnMs: 10_000)]
        var report = FaultReport()
        HistoryChecker.checkRecovery(
            history,
            faults: faults,
            bound: 60_000,
            commitMs: ["h1": 9_990, "h2": 20_500],
            into: &report
        )
        #expect(report.recovery["kill-pg-primary"]?.p50Ms == 13)
        #expect(report.recovery["kill-pg-primary"]?.committedP50Ms == 10_500)
        #expect(report.recovery["kill-pg-primary"]?.committedMaxMs == 10_500)
    }

    @Test("a primary failover: every hold answered ok before the kill must be in the database, counted per failover")
    func failovers() {
        let history = [
            Self.hold("a1", "h1", seats: ["s1"], at: 1_000, expires: 4_000),
            Self.hold("a2", "h2", seats: ["s2"], at: 2_000, expires: 5_000),
            Self.hold("a1", "h3", seats: ["s3"], at: 9_000, expires: 12_000),
            Self.hold("a2", "x", seats: ["s4"], at: 3_000, expires: 0, result: "error", code: "SEAT_UNAVAILABLE"),
        ]
        let faults = [
            FaultRecord(kind: "kill-pg-primary", startMs: 2_500, returnMs: 2_500, holdsBefore: 7, holdsAfter: 7),
            FaultRecord(kind: "kill-redis-master", startMs: 5_000, returnMs: 5_000),
            FaultRecord(kind: "kill-pg-primary", startMs: 10_000, returnMs: 10_000, holdsBefore: 9, holdsAfter: 8),
        ]
        var report = FaultReport()
        // h2 is lost: answered ok at 2000, before both kills.
        HistoryChecker.checkFailovers(history, faults: faults, holdIDs: ["h1", "h3"], into: &report)
        #expect(report.failovers.count == 2)
        #expect(report.failovers.map(\.answeredOkBefore) == [2, 3])
        #expect(report.failovers.map(\.answeredOkPresent) == [1, 2])
        // h2 twice (once per failover it preceded) and the harness's count on the second failover.
        #expect(report.anomalies["failover-lost-hold"] == 3)

        var clean = FaultReport()
        HistoryChecker.checkFailovers(
            history,
            faults: Array(faults.prefix(2)),
            holdIDs: ["h1", "h2", "h3"],
            into: &clean
        )
        #expect(clean.anomalies["failover-lost-hold", default: 0] == 0)
        #expect(clean.failovers.map(\.answeredOkPresent) == [2])
    }

    @Test("rule 8: the events applied per seat by version must equal the rows and the core's availability answer")
    func seatVersions() {
        let hold = DatabaseSnapshot.HoldRow(
            holdID: "h1",
            showtimeID: "flt-0",
            userID: "u",
            seatIDs: ["s1"],
            status: "expired",
            createdAt: 1_000,
            expiresAt: 2_000_000,
            updatedAt: 3_000_000
        )
        let free = DatabaseSnapshot.SeatVersion(state: "available", version: 2)
        let snapshot = DatabaseSnapshot(
            holds: [hold],
            outbox: [
                .init(id: 1, eventID: "e1", holdID: "h1", type: "hold.created", published: true),
                .init(id: 2, eventID: "e2", holdID: "h1", type: "hold.expired", published: true),
            ],
            takenSeats: [],
            now: 5_000_000,
            seats: ["flt-0/s1": free],
            availability: ["flt-0/s1": free],
            transactionNow: 5_000_000
        )
        let events = [
            ReceivedEvent(
                eventID: "e1",
                type: "hold.created",
                holdID: "h1",
                showtimeID: "flt-0",
                seatIDs: ["s1"],
                sequence: 0,
                seatVersions: ["s1": 1],
                expiresAt: 2_000_000
            ),
            ReceivedEvent(
                eventID: "e2",
                type: "hold.expired",
                holdID: "h1",
                showtimeID: "flt-0",
                seatIDs: ["s1"],
                sequence: 1,
                seatVersions: ["s1": 2]
            ),
        ]
        func report(answered version: Int64, events: [ReceivedEvent]) -> FaultReport {
            HistoryChecker.check(
                CheckInput(
                    history: [],
                    faults: [],
                    snapshot: snapshot,
                    keyedHolds: [:],
                    events: events,
                    finalSeats: [
                        FinalSeat(
                            showtimeID: "flt-0",
                            seatID: "s1",
                            state: "available",
                            holdID: nil,
                            availabilityState: "available",
                            availabilityVersion: version
                        )
                    ]
                )
            )
        }
        #expect(report(answered: 2, events: events).passed, "\(report(answered: 2, events: events).text())")
        #expect(report(answered: 1, events: events).anomalies["seat-versions"] == 1)
        // The hold.expired lost on the way: the map still has s1 held by a dead hold, which reads as
        // available one version on: the same answer (lost-event reports the loss).
        let lost = report(answered: 2, events: [events[0]])
        #expect(lost.anomalies["seat-versions"] == 0 && lost.anomalies["lost-event"] == 1)
        // Events without versions (a core before rule 8): each one is a seat-versions anomaly.
        var unversioned = events
        for index in unversioned.indices { unversioned[index].seatVersions = nil }
        #expect(report(answered: 2, events: unversioned).anomalies["seat-versions"] == 2)
    }

    @Test("a cut relay leader whose leadership never passed on is an anomaly; handover and outbox lag are reported")
    func handover() {
        let history = [Self.hold("a1", "h1", seats: ["s1"], at: 20_500, expires: 24_000)]
        let faults = [
            FaultRecord(kind: "partition-relay-db", startMs: 10_000, returnMs: 18_000, handoverMs: 7_000),
            FaultRecord(kind: "partition-relay-db", startMs: 30_000, returnMs: 71_000, handoverMs: nil),
            FaultRecord(kind: "partition-redis", startMs: 5_000, returnMs: 8_000, outboxDrainedMs: 120),
        ]
        var report = FaultReport()
        HistoryChecker.checkRecovery(history, faults: faults, bound: 60_000, into: &report)
        #expect(report.anomalies["no-handover"] == 1)
        #expect(report.recovery["partition-relay-db"]?.handoverMaxMs == 7_000)
        #expect(report.recovery["partition-redis"]?.outboxMaxMs == 120)
        #expect(report.text().contains("relay leadership passed on after the cut: p50 7000 ms"))
        #expect(report.text().contains("outbox lag back to 0: p50 120 ms"))
    }
}
