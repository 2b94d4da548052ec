import Foundation
import Logging
import PostgresClient

/// One broken rule, said so that a person can find the rows.
public struct Violation: Codable, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable {
        case doubleHold = "double-hold"
        case soldTwice = "sold-twice"
        case heldAfterSale = "held-after-sale"
        case seatState = "seat-state"
        case wonHoldMissing = "won-hold-missing"
        case missingEvent = "missing-event"
        case uncommittedEvent = "uncommitted-event"
        case eventOrder = "event-order"
        case outbox = "outbox"
        case undecodableEvent = "undecodable-event"
        /// Rule 8: an event without `seatVersions` or naming other seats than it versions, two changes
        /// of a seat with one version, or the events applied per seat by version over an empty map
        /// disagreeing with the seat rows or the availability answer.
        case seatVersions = "seat-versions"
    }

    public var kind: Kind
    public var message: String
    public var description: String { "\(kind.rawValue): \(message)" }
}

public struct VerificationSummary: Codable, Sendable {
    public var holds: Int
    public var seatsTouched: Int
    public var outboxRows: Int
    public var eventsReceived: Int?
    public var duplicateEvents: Int?
    public var wonHoldsChecked: Int?
    public var violations: [Violation]
    public var passed: Bool { violations.isEmpty }

    public func text() -> String {
        var lines = [
            "verify: \(holds) holds over \(seatsTouched) seats, \(outboxRows) outbox rows"
                + (eventsReceived.map { ", \($0) events received (\(duplicateEvents ?? 0) duplicates)" } ?? "")
                + (wonHoldsChecked.map { ", \($0) won holds checked" } ?? "")
                + ": " + (passed ? "OK, no violation" : "\(violations.count) VIOLATIONS")
        ]
        for violation in violations.prefix(200) { lines.append("  VIOLATION \(violation)") }
        if violations.count > 200 { lines.append("  ... and \(violations.count - 200) more") }
        return lines.joined(separator: "\n")
    }
}

/// The rows the verifier reads, timestamps in microseconds since the epoch (compared exactly).
public struct DatabaseSnapshot: Sendable {
    public struct HoldRow: Sendable, Hashable {
        public var holdID: String
        public var showtimeID: String
        public var userID: String
        public var seatIDs: [String]
        public var status: String
        public var createdAt: Int64
        public var expiresAt: Int64
        public var updatedAt: Int64
        public var orderID: String?

        public init(
            holdID: String,
            showtimeID: String,
            userID: String,
            seatIDs: [String],
            status: String,
            createdAt: Int64,
            expiresAt: Int64,
            updatedAt: Int64,
            orderID: String? = nil
        ) {
            self.holdID = holdID
            self.showtimeID = showtimeID
            self.userID = userID
            self.seatIDs = seatIDs
            self.status = status
            self.createdAt = createdAt
            self.expiresAt = expiresAt
            self.updatedAt = updatedAt
            self.orderID = orderID
        }
    }

    public struct OutboxRow: Sendable, Hashable {
        public var id: Int64
        public var eventID: String
        public var holdID: String
        public var type: String
        public var published: Bool
    }

    public struct SeatRow: Sendable, Hashable {
        public var showtimeID: String
        public var seatID: String
        public var state: String
        public var holdID: String?
    }

    /// A seat as rule 8 sees it: its state and version as of the snapshot's transaction clock (a seat
    /// of a dead hold is available, one version on), and its hold's expiry while held.
    public struct SeatVersion: Sendable, Hashable {
        public var state: String
        public var version: Int64
        public var holdExpiresAt: Int64?

        public init(state: String, version: Int64, holdExpiresAt: Int64? = nil) {
            self.state = state
            self.version = version
            self.holdExpiresAt = holdExpiresAt
        }
    }

    public var holds: [HoldRow]
    public var outbox: [OutboxRow]
    public var takenSeats: [SeatRow]
    public var now: Int64
    /// Every seat of the showtimes read ("showtime/seat"), from its row, as of `transactionNow`.
    public var seats: [String: SeatVersion] = [:]
    /// What `inventory_availability` (the core's availability answer) says in the same transaction.
    public var availability: [String: SeatVersion] = [:]
    /// The transaction's clock (`now()`), which `inventory_availability` judges expiry by.
    public var transactionNow: Int64 = 0
    /// False for a database from before per-seat versions (no `seat_states.version`): rule 8 then
    /// compares states only.
    public var versioned = true

    /// Reads the rows of the showtimes whose id starts with `showtimePrefix`, in one REPEATABLE READ
    /// transaction so the three tables agree with each other.
    public static func read(_ connection: PostgresConnection, showtimePrefix: String) throws -> DatabaseSnapshot {
        let like =
            showtimePrefix.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_") + "%"
        func micros(_ column: String) -> String { "(extract(epoch FROM \(column)) * 1000000)::bigint" }
        return try connection.transaction { connection in
            try connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            let now = try connection.query("SELECT \(micros("clock_timestamp()")) AS now").rows[0]
                .decode("now", as: Int64.self)
            var holds: [HoldRow] = []
            for row in try connection.query(
                """
                SELECT hold_id, showtime_id, user_id, seat_ids, status, \(micros("created_at")) AS created,
                       \(micros("expires_at")) AS expires, \(micros("updated_at")) AS updated, order_id
                  FROM holds WHERE showtime_id LIKE $1
                """,
                [like]
            ).rows {
                holds.append(
                    HoldRow(
                        holdID: try row.decode("hold_id", as: String.self),
                        showtimeID: try row.decode("showtime_id", as: String.self),
                        userID: try row.decode("user_id", as: String.self),
                        seatIDs: try row.decode("seat_ids", as: [String].self),
                        status: try row.decode("status", as: String.self),
                        createdAt: try row.decode("created", as: Int64.self),
                        expiresAt: try row.decode("expires", as: Int64.self),
                        updatedAt: try row.decode("updated", as: Int64.self),
                        orderID: row["order_id"]
                    )
                )
            }
            var outbox: [OutboxRow] = []
            for row in try connection.query(
                """
                SELECT o.id, o.event_id::text AS event_id, o.hold_id, o.event_type, o.published_at IS NOT NULL AS published
                  FROM outbox o JOIN holds h ON h.hold_id = o.hold_id WHERE h.showtime_id LIKE $1
                """,
                [like]
            ).rows {
                outbox.append(
                    OutboxRow(
                        id: try row.decode("id", as: Int64.self),
                        eventID: try row.decode("event_id", as: String.self),
                        holdID: try row.decode("hold_id", as: String.self),
                        type: try row.decode("event_type", as: String.self),
                        published: try row.decode("published", as: Bool.self)
                    )
                )
            }
            var seats: [SeatRow] = []
            for row in try connection.query(
                "SELECT showtime_id, seat_id, state, hold_id FROM seat_states WHERE showtime_id LIKE $1 AND state <> 'available'",
                [like]
            ).rows {
                seats.append(
                    SeatRow(
                        showtimeID: try row.decode("showtime_id", as: String.self),
                        seatID: try row.decode("seat_id", as: String.self),
                        state: try row.decode("state", as: String.self),
                        holdID: row["hold_id"]
                    )
                )
            }
            var snapshot = DatabaseSnapshot(holds: holds, outbox: outbox, takenSeats: seats, now: now)
            try readVersions(connection, like: like, into: &snapshot)
            return snapshot
        }
    }
}

extension DatabaseSnapshot {
    /// Every seat's row and the availability function's answer, in the snapshot's transaction.
    static func readVersions(
        _ connection: PostgresConnection,
        like: String,
        into snapshot: inout DatabaseSnapshot
    ) throws {
        func micros(_ column: String) -> String { "(extract(epoch FROM \(column)) * 1000000)::bigint" }
        snapshot.transactionNow = try connection.query("SELECT \(micros("now()")) AS now").rows[0]
            .decode("now", as: Int64.self)
        // `version` read through to_jsonb, so that a database from before per-seat versions (today's main
        // when this was written) can be checked too: its stale events are what rule 8 is about.
        for row in try connection.query(
            """
            SELECT s.showtime_id, s.seat_id, s.state, (to_jsonb(s) ->> 'version')::bigint AS version,
                   \(micros("s.hold_expires_at")) AS expires
              FROM seat_states s WHERE s.showtime_id LIKE $1
            """,
            [like]
        ).rows {
            let key = "\(try row.decode("showtime_id", as: String.self))/\(try row.decode("seat_id", as: String.self))"
            let version = try row.decodeIfPresent("version", as: Int64.self)
            if version == nil { snapshot.versioned = false }
            snapshot.seats[key] = Verifier.effective(
                state: try row.decode("state", as: String.self),
                version: version ?? 0,
                holdExpiresAt: try row.decodeIfPresent("expires", as: Int64.self),
                now: snapshot.transactionNow
            )
        }
        for row in try connection.query(
            """
            SELECT t.showtime_id, a.seat_id, a.state, (to_jsonb(a) ->> 'version')::bigint AS version
              FROM (SELECT DISTINCT showtime_id FROM seat_states WHERE showtime_id LIKE $1) t,
                   inventory_availability(t.showtime_id) a
            """,
            [like]
        ).rows {
            let key = "\(try row.decode("showtime_id", as: String.self))/\(try row.decode("seat_id", as: String.self))"
            snapshot.availability[key] = SeatVersion(
                state: try row.decode("state", as: String.self),
                version: try row.decodeIfPresent("version", as: Int64.self) ?? 0
            )
        }
    }
}

/// Checks a run's history: from the database rows, the answers the bench got, and the events it consumed.
public enum Verifier {
    static let terminalEvent = ["released": "hold.released", "expired": "hold.expired", "purchased": "seats.purchased"]

    /// The pure check. `events` nil: no event stream to compare (a standalone `verify`).
    public static func check(
        _ snapshot: DatabaseSnapshot,
        wonHolds: [WonHold]?,
        events: [ReceivedEvent]?,
        undecodableEvents: [String] = [],
        answered: [String: DatabaseSnapshot.SeatVersion]? = nil
    ) -> VerificationSummary {
        var violations: [Violation] = []
        let holdsByID = Dictionary(snapshot.holds.map { ($0.holdID, $0) }, uniquingKeysWith: { first, _ in first })
        var outboxByHold: [String: [DatabaseSnapshot.OutboxRow]] = [:]
        for row in snapshot.outbox { outboxByHold[row.holdID, default: []].append(row) }

        // Sequence numbers of each hold's creation and end, from the outbox: a conflicting claim waits for
        // the row locks of the transaction that freed the seat, so its outbox row gets a later id. This
        // orders holds even when a claim's transaction began (created_at = now()) before the release committed.
        var createdSeq: [String: Int64] = [:]
        var endSeq: [String: Int64] = [:]
        for row in snapshot.outbox {
            if row.type == "hold.created" {
                createdSeq[row.holdID] = min(createdSeq[row.holdID] ?? .max, row.id)
            } else {
                endSeq[row.holdID] = min(endSeq[row.holdID] ?? .max, row.id)
            }
        }

        // 1. No seat in two live holds, none sold twice.
        var holdsBySeat: [String: [DatabaseSnapshot.HoldRow]] = [:]
        for hold in snapshot.holds {
            for seat in hold.seatIDs { holdsBySeat["\(hold.showtimeID)/\(seat)", default: []].append(hold) }
        }
        for (seat, holds) in holdsBySeat.sorted(by: { $0.key < $1.key }) {
            let purchased = holds.filter { $0.status == "purchased" }
            if purchased.count > 1 {
                violations.append(
                    Violation(
                        kind: .soldTwice,
                        message: "seat \(seat) sold \(purchased.count) times: "
                            + purchased.map { "\($0.holdID) (order \($0.orderID ?? "?"))" }.joined(separator: ", ")
                    )
                )
            }
            guard holds.count > 1 else { continue }
            let ordered: [DatabaseSnapshot.HoldRow]
            if holds.allSatisfy({ createdSeq[$0.holdID] != nil }) {
                ordered = holds.sorted { createdSeq[$0.holdID]! < createdSeq[$1.holdID]! }
            } else {
                ordered = holds.sorted { ($0.createdAt, $0.holdID) < ($1.createdAt, $1.holdID) }
            }
            for (earlier, later) in zip(ordered, ordered.dropFirst()) {
                if earlier.status == "purchased" {
                    violations.append(
                        Violation(
                            kind: .heldAfterSale,
                            message: "seat \(seat) was sold to hold \(earlier.holdID) and then held by \(later.holdID) "
                                + "(created \(format(later.createdAt)))"
                        )
                    )
                    continue
                }
                if let end = endSeq[earlier.holdID], let start = createdSeq[later.holdID], end < start { continue }
                if later.createdAt >= earlier.expiresAt { continue }
                if earlier.status == "released", later.createdAt >= earlier.updatedAt,
                    endSeq[earlier.holdID] == nil || createdSeq[later.holdID] == nil
                {
                    continue
                }
                violations.append(
                    Violation(
                        kind: .doubleHold,
                        message: "seat \(seat) in two live holds: \(describe(earlier)) and \(describe(later))"
                    )
                )
            }
        }

        // 2. The seat rows agree with the holds.
        var seatHolder: [String: DatabaseSnapshot.SeatRow] = [:]
        for seat in snapshot.takenSeats {
            let key = "\(seat.showtimeID)/\(seat.seatID)"
            seatHolder[key] = seat
            guard let holdID = seat.holdID, let hold = holdsByID[holdID] else {
                violations.append(
                    Violation(kind: .seatState, message: "seat \(key) is \(seat.state) without a known hold")
                )
                continue
            }
            let expected = seat.state == "purchased" ? "purchased" : "active"
            if !hold.seatIDs.contains(seat.seatID) || hold.status != expected {
                violations.append(
                    Violation(
                        kind: .seatState,
                        message: "seat \(key) is \(seat.state) by hold \(holdID), which is \(hold.status) "
                            + "over seats \(hold.seatIDs.joined(separator: ","))"
                    )
                )
            }
        }
        for hold in snapshot.holds
        where hold.status == "purchased" || (hold.status == "active" && hold.expiresAt > snapshot.now) {
            let state = hold.status == "purchased" ? "purchased" : "held"
            for seat in hold.seatIDs {
                let row = seatHolder["\(hold.showtimeID)/\(seat)"]
                if row?.holdID != hold.holdID || row?.state != state {
                    violations.append(
                        Violation(
                            kind: .seatState,
                            message: "hold \(hold.holdID) is \(hold.status) but seat \(hold.showtimeID)/\(seat) is "
                                + "\(row?.state ?? "available") by \(row?.holdID ?? "nobody")"
                        )
                    )
                }
            }
        }

        // 3. Every committed change has its outbox row, once, in order.
        for hold in snapshot.holds {
            let rows = outboxByHold[hold.holdID] ?? []
            var expected = ["hold.created"]
            if let terminal = terminalEvent[hold.status] { expected.append(terminal) }
            let types = rows.sorted { $0.id < $1.id }.map(\.type)
            if types != expected {
                violations.append(
                    Violation(
                        kind: .outbox,
                        message:
                            "hold \(hold.holdID) is \(hold.status); its outbox rows are [\(types.joined(separator: ", "))], "
                            + "expected [\(expected.joined(separator: ", "))]"
                    )
                )
            }
        }

        // 4. The events: every committed change produced its event, no event without a commit, per-hold order.
        var received: Int?
        var duplicates: Int?
        if let events {
            var firstArrival: [String: ReceivedEvent] = [:]
            var typesByHold: [String: [String: Int]] = [:]
            var duplicateCount = 0
            for event in events.sorted(by: { $0.sequence < $1.sequence }) {
                if firstArrival[event.eventID] != nil {
                    duplicateCount += 1
                    continue
                }
                firstArrival[event.eventID] = event
                typesByHold[event.holdID, default: [:]][event.type] = event.sequence
            }
            received = firstArrival.count
            duplicates = duplicateCount
            let outboxByEvent = Dictionary(snapshot.outbox.map { ($0.eventID, $0) }, uniquingKeysWith: { a, _ in a })
            for hold in snapshot.holds {
                let types = typesByHold[hold.holdID] ?? [:]
                var expected = ["hold.created"]
                if let terminal = terminalEvent[hold.status] { expected.append(terminal) }
                for type in expected where types[type] == nil {
                    violations.append(
                        Violation(
                            kind: .missingEvent,
                            message: "hold \(hold.holdID) (\(hold.status)) committed but no \(type) event was received"
                        )
                    )
                }
                if let created = types["hold.created"] {
                    for (type, sequence) in types where type != "hold.created" && sequence < created {
                        violations.append(
                            Violation(
                                kind: .eventOrder,
                                message: "hold \(hold.holdID): \(type) arrived before hold.created"
                            )
                        )
                    }
                }
            }
            for event in firstArrival.values.sorted(by: { $0.sequence < $1.sequence }) {
                if let row = outboxByEvent[event.eventID] {
                    if row.type != event.type || row.holdID != event.holdID {
                        violations.append(
                            Violation(
                                kind: .uncommittedEvent,
                                message: "event \(event.eventID) says \(event.type) of \(event.holdID); "
                                    + "the outbox says \(row.type) of \(row.holdID)"
                            )
                        )
                    }
                } else if let hold = holdsByID[event.holdID] {
                    let committed = ["hold.created"] + (terminalEvent[hold.status].map { [$0] } ?? [])
                    if !committed.contains(event.type) {
                        violations.append(
                            Violation(
                                kind: .uncommittedEvent,
                                message: "event \(event.eventID) \(event.type) of hold \(event.holdID), "
                                    + "which is \(hold.status)"
                            )
                        )
                    }
                } else {
                    violations.append(
                        Violation(
                            kind: .uncommittedEvent,
                            message: "event \(event.eventID) \(event.type) of hold \(event.holdID), "
                                + "which is not in the database"
                        )
                    )
                }
            }
        }
        for body in undecodableEvents {
            violations.append(Violation(kind: .undecodableEvent, message: body))
        }
        if let events {
            violations += checkSeatVersions(events: events, snapshot: snapshot, answered: answered)
        }

        // 5. Every hold the bench was told it won is in the database, as it was told.
        if let wonHolds {
            for won in wonHolds {
                guard let hold = holdsByID[won.holdID] else {
                    violations.append(
                        Violation(
                            kind: .wonHoldMissing,
                            message: "hold \(won.holdID) (\(won.showtimeID): \(won.seatIDs.joined(separator: ","))) "
                                + "was answered as won but is not in the database"
                        )
                    )
                    continue
                }
                if hold.showtimeID != won.showtimeID || Set(hold.seatIDs) != Set(won.seatIDs)
                    || hold.userID != won.userID
                {
                    violations.append(
                        Violation(
                            kind: .wonHoldMissing,
                            message: "hold \(won.holdID) was answered as \(won.showtimeID): "
                                + "\(won.seatIDs.joined(separator: ",")) for \(won.userID); the database has "
                                + "\(hold.showtimeID): \(hold.seatIDs.joined(separator: ",")) for \(hold.userID)"
                        )
                    )
                }
            }
        }

        return VerificationSummary(
            holds: snapshot.holds.count,
            seatsTouched: holdsBySeat.count,
            outboxRows: snapshot.outbox.count,
            eventsReceived: received,
            duplicateEvents: duplicates,
            wonHoldsChecked: wonHolds?.count,
            violations: violations
        )
    }

    /// Reads the database and, with a collector, waits (up to `eventWait`) until every outbox row of the
    /// run has been received, then checks. Events that arrive for changes committed after the snapshot
    /// (a sweep running meanwhile) are judged against a second read.
    public static func verify(
        databaseURL: String,
        showtimePrefix: String,
        wonHolds: [WonHold]?,
        collector: EventCollector?,
        eventWait: Duration = .seconds(30),
        logger: Logger
    ) throws -> VerificationSummary {
        let connection = try PostgresConnection(url: databaseURL, logger: logger)
        defer { connection.close() }
        var snapshot = try DatabaseSnapshot.read(connection, showtimePrefix: showtimePrefix)
        guard let collector else {
            return check(snapshot, wonHolds: wonHolds, events: nil)
        }
        // Wait until every outbox row read has been received and every event received is in the rows
        // read; a sweep committing meanwhile adds rows, so read again until the two agree (or time is up).
        let deadline = ContinuousClock.now + eventWait
        var events = collector.events
        while true {
            let seen = Set(events.map(\.eventID))
            let known = Set(snapshot.outbox.map(\.eventID))
            let allReceived = known.isSubset(of: seen)
            if (allReceived && seen.isSubset(of: known)) || ContinuousClock.now >= deadline { break }
            Thread.sleep(forTimeInterval: 0.2)
            if allReceived { snapshot = try DatabaseSnapshot.read(connection, showtimePrefix: showtimePrefix) }
            events = collector.events
        }
        collector.stop()
        return check(snapshot, wonHolds: wonHolds, events: events, undecodableEvents: collector.undecodable)
    }

    /// A seat as a reader sees it at `now`: held by a hold whose expiry has passed is available, at
    /// the next version (the expiry is a change, rule 3 and decision 0012).
    public static func effective(
        state: String,
        version: Int64,
        holdExpiresAt: Int64?,
        now: Int64
    )
        -> DatabaseSnapshot.SeatVersion
    {
        if state == "held", let expires = holdExpiresAt, expires <= now {
            return DatabaseSnapshot.SeatVersion(state: "available", version: version + 1)
        }
        return DatabaseSnapshot.SeatVersion(
            state: state,
            version: version,
            holdExpiresAt: state == "held" ? holdExpiresAt : nil
        )
    }

    /// Rule 8 of INTERFACE.md, as a consumer lives it: every event de-duplicated by id, each applied to a
    /// seat only when its version is newer than the one the consumer has (a seat it has not heard of is
    /// available at version 0), in arrival order, over an empty map. The result must be, seat for seat,
    /// what the rows say and what availability answers (in the snapshot's transaction, and `answered`,
    /// the core's own answer, when given). Also: every event versions exactly the seats it names, and no
    /// two changes of a seat share a version. An event without `seatVersions` is applied whatever its
    /// version, as consumers had to before rule 8: that is how a stale `hold.expired` shows up.
    public static func checkSeatVersions(
        events: [ReceivedEvent],
        snapshot: DatabaseSnapshot,
        answered: [String: DatabaseSnapshot.SeatVersion]? = nil
    ) -> [Violation] {
        var violations: [Violation] = []
        var seen = Set<String>()
        var applied: [String: DatabaseSnapshot.SeatVersion] = [:]
        var versionOwner: [String: String] = [:]
        var unversioned = 0
        for event in events.sorted(by: { $0.sequence < $1.sequence }) where seen.insert(event.eventID).inserted {
            let state: String
            switch event.type {
            case "hold.created": state = "held"
            case "seats.purchased": state = "purchased"
            default: state = "available"
            }
            guard let versions = event.seatVersions else {
                unversioned += 1
                if unversioned <= 20 {
                    violations.append(
                        Violation(
                            kind: .seatVersions,
                            message:
                                "event \(event.eventID) (\(event.type) of hold \(event.holdID)) carries no seatVersions"
                        )
                    )
                }
                for seat in event.seatIDs {
                    let key = "\(event.showtimeID)/\(seat)"
                    applied[key] = DatabaseSnapshot.SeatVersion(
                        state: state,
                        version: applied[key]?.version ?? 0,
                        holdExpiresAt: state == "held" ? event.expiresAt : nil
                    )
                }
                continue
            }
            if Set(versions.keys) != Set(event.seatIDs) || event.seatIDs.count != versions.count {
                violations.append(
                    Violation(
                        kind: .seatVersions,
                        message: "event \(event.eventID) (\(event.type) of hold \(event.holdID)) names seats "
                            + "[\(event.seatIDs.joined(separator: ","))] but versions [\(versions.keys.sorted().joined(separator: ","))]"
                    )
                )
            }
            for (seat, version) in versions.sorted(by: { $0.key < $1.key }) {
                let key = "\(event.showtimeID)/\(seat)"
                if let owner = versionOwner.updateValue(event.eventID, forKey: "\(key)@\(version)"),
                    owner != event.eventID
                {
                    violations.append(
                        Violation(
                            kind: .seatVersions,
                            message: "seat \(key): events \(owner) and \(event.eventID) (\(event.type) of hold "
                                + "\(event.holdID)) both claim version \(version)"
                        )
                    )
                }
                if version > applied[key]?.version ?? 0 {
                    applied[key] = DatabaseSnapshot.SeatVersion(
                        state: state,
                        version: version,
                        holdExpiresAt: state == "held" ? event.expiresAt : nil
                    )
                }
            }
        }
        if unversioned > 20 {
            violations.append(
                Violation(kind: .seatVersions, message: "... and \(unversioned - 20) more events without seatVersions")
            )
        }
        func describe(_ seat: DatabaseSnapshot.SeatVersion) -> String { "\(seat.state) v\(seat.version)" }
        var compared: [(String, [String: DatabaseSnapshot.SeatVersion])] = [
            ("the seat row", snapshot.seats), ("availability", snapshot.availability),
        ]
        if let answered { compared.append(("the core's availability answer", answered)) }
        var mismatches = 0
        for (source, truth) in compared {
            for (key, expected) in truth.sorted(by: { $0.key < $1.key }) {
                let entry = applied[key].map {
                    effective(
                        state: $0.state,
                        version: $0.version,
                        holdExpiresAt: $0.holdExpiresAt,
                        now: snapshot.transactionNow
                    )
                }
                let derived = entry ?? DatabaseSnapshot.SeatVersion(state: "available", version: 0)
                // Without versions on both sides (a core from before rule 8), only the states can be compared.
                let withVersions = unversioned == 0 && snapshot.versioned
                let expectedSeat = DatabaseSnapshot.SeatVersion(
                    state: expected.state,
                    version: withVersions ? expected.version : 0
                )
                let derivedSeat = DatabaseSnapshot.SeatVersion(
                    state: derived.state,
                    version: withVersions ? derived.version : 0
                )
                guard derivedSeat != expectedSeat else { continue }
                mismatches += 1
                if mismatches <= 50 {
                    violations.append(
                        Violation(
                            kind: .seatVersions,
                            message: "seat \(key): the events applied by version give \(describe(derivedSeat)), "
                                + "\(source) says \(describe(expectedSeat))"
                        )
                    )
                }
            }
        }
        if mismatches > 50 {
            violations.append(Violation(kind: .seatVersions, message: "... and \(mismatches - 50) more seats disagree"))
        }
        return violations
    }

    static func format(_ micros: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    static func describe(_ hold: DatabaseSnapshot.HoldRow) -> String {
        let end: String
        switch hold.status {
        case "purchased": end = "sold"
        case "released": end = format(min(hold.updatedAt, hold.expiresAt))
        default: end = format(hold.expiresAt)
        }
        return "\(hold.holdID) (\(hold.status), [\(format(hold.createdAt)), \(end)))"
    }
}
