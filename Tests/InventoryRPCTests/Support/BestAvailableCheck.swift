import Contracts
import Foundation
import PostgresClient
import TestSupport
import Testing

@testable import InventoryRPC

/// A venue of `rows` rows of `perRow` seats: rows `R1`... (Stalls for the first half, Circle after), seats
/// numbered 1...perRow, seat ids `R<row>-<number>`; rank 1 for the first five rows, one more per five rows.
func venueSeats(rows: Int, perRow: Int) -> [SeatDefinition] {
    (1...rows).flatMap { row in
        (1...perRow).map { number in
            SeatDefinition(
                seatId: "R\(row)-\(number)",
                section: row <= rows / 2 ? "Stalls" : "Circle",
                row: "R\(row)",
                number: number,
                category: row <= rows / 2 ? "premium" : "standard",
                rank: (row - 1) / 5 + 1
            )
        }
    }
}

extension CoreHarness {
    /// Defines a new showtime with `seats` (in requests of 1,000 seats); returns its id.
    func venue(_ seats: [SeatDefinition]) async throws -> String {
        let showtimeID = "venue-\(uniqueID())"
        for start in stride(from: 0, to: seats.count, by: 1000) {
            let part = Array(seats[start..<min(start + 1000, seats.count)])
            let answer = try await client.call(.seatsDefine, SeatsDefineRequest(showtimeId: showtimeID, seats: part))
            guard case .ok = try answer.decode(SeatsDefined.self) else {
                throw TestFailure("seats.define failed: \(String(decoding: answer.body, as: UTF8.self))")
            }
        }
        return showtimeID
    }
}

/// One best-available request of a rush, its answer, and the wall-clock time its answer arrived.
struct BestAvailableResult: Sendable {
    var quantity: Int
    var answer: RPCAnswer
    var answeredAt: Date
}

/// Sends the best-available requests of `quantities` (`together`, or any seats) all at once.
func bestAvailableRush(
    _ core: CoreHarness,
    showtimeID: String,
    quantities: [Int],
    together: Bool = true
) async throws
    -> [BestAvailableResult]
{
    try await withThrowingTaskGroup(of: BestAvailableResult.self) { group in
        for (index, quantity) in quantities.enumerated() {
            group.addTask {
                let answer = try await core.client.call(
                    .hold,
                    BestAvailableHoldRequest(
                        showtimeId: showtimeID,
                        quantity: quantity,
                        userId: "rush-\(index)",
                        together: together
                    ),
                    timeout: .seconds(120)
                )
                return BestAvailableResult(quantity: quantity, answer: answer, answeredAt: Date())
            }
        }
        var results: [BestAvailableResult] = []
        for try await result in group { results.append(result) }
        return results
    }
}

/// What a best-available rush did.
struct RushOutcome {
    var created = 0
    var refused = 0
    /// Refusals for which the seat history, as of the moment the refusal was received, still showed a free
    /// set of adjacent seats of the requested size: requests refused while enough suitable seats were free.
    var unjustifiedRefusals: [String] = []
    /// Everything else that broke a rule (seats in two holds, seats not adjacent, ...).
    var violations: [String] = []
}

/// Checks a `together` rush against the database: every `ok` is a live hold of `quantity` seats adjacent in
/// one row (one section and row, consecutive numbers); no seat is in two live holds; the live holds are
/// exactly the `ok` answers; every other answer is SEAT_UNAVAILABLE with `details.quantity`; and each
/// refusal is justified by the seat history: replaying the history entries that took effect before the
/// refusal was received (holds only: nothing is released during a rush), no `quantity` adjacent free seats
/// were left. (A hold that took effect before that instant but committed after it is counted as taken: the
/// check never blames a refusal on a seat that was not free, and seats only get taken during a rush.)
///
/// With `together: false` the holds need not be adjacent, and a refusal is justified when fewer than
/// `quantity` seats of the whole showtime were free.
func checkBestAvailableRush(
    _ results: [BestAvailableResult],
    core: CoreHarness,
    showtimeID: String,
    together: Bool = true
) throws -> RushOutcome {
    var outcome = RushOutcome()
    var layout: [String: (row: String, number: Int)] = [:]
    var rows: [String: [Int: String]] = [:]
    for row in try core.query(
        "SELECT seat_id, coalesce(section, '') || '/' || coalesce(seat_row, '') AS row_key, number FROM seat_states WHERE showtime_id = $1",
        [showtimeID]
    ) {
        let seat = row["seat_id"]!
        let rowKey = row["row_key"]!
        let number = Int(row["number"]!)!
        layout[seat] = (rowKey, number)
        rows[rowKey, default: [:]][number] = seat
    }

    var holder: [String: String] = [:]
    var answered: Set<String> = []
    for result in results {
        switch try result.answer.decode(Hold.self) {
        case .ok(let hold):
            outcome.created += 1
            answered.insert(hold.holdId)
            if hold.seatIds.count != result.quantity {
                outcome.violations.append(
                    "hold \(hold.holdId) has \(hold.seatIds.count) seats, asked \(result.quantity)"
                )
            }
            let places = hold.seatIds.compactMap { layout[$0] }
            let numbers = places.map(\.number).sorted()
            if together,
                Set(places.map(\.row)).count != 1
                    || numbers != Array((numbers.first ?? 0)..<((numbers.first ?? 0) + numbers.count))
            {
                outcome.violations.append("hold \(hold.holdId) seats \(hold.seatIds) are not adjacent in one row")
            }
            for seat in hold.seatIds {
                if let other = holder.updateValue(hold.holdId, forKey: seat) {
                    outcome.violations.append("seat \(seat) is in holds \(other) and \(hold.holdId)")
                }
            }
        case .error(let error):
            outcome.refused += 1
            if error.code != .seatUnavailable || error.details?["quantity"] != .number(Double(result.quantity)) {
                outcome.violations.append("unexpected refusal \(error.code.rawValue) \(error.details ?? [:])")
            }
        }
    }
    let live = Set(
        try core.query("SELECT hold_id FROM holds WHERE showtime_id = $1 AND status = 'active'", [showtimeID])
            .map { $0["hold_id"]! }
    )
    if live != answered { outcome.violations.append("live holds \(live.count) != ok answers \(answered.count)") }
    let held = try core.query(
        "SELECT seat_id, hold_id FROM seat_states WHERE showtime_id = $1 AND state <> 'available'",
        [showtimeID]
    )
    for row in held where holder[row["seat_id"]!] != row["hold_id"]! {
        outcome.violations.append("seat \(row["seat_id"]!) is held by \(row["hold_id"]!) in the database")
    }
    if held.count != holder.count { outcome.violations.append("\(held.count) seats held, \(holder.count) answered") }

    // When each seat was taken, by the history.
    var takenAt: [String: Date] = [:]
    for row in try core.query(
        """
        SELECT seat_id, (extract(epoch FROM min(occurred_at)) * 1000)::bigint AS ms FROM seat_history
         WHERE showtime_id = $1 AND state = 'held' GROUP BY seat_id
        """,
        [showtimeID]
    ) {
        takenAt[row["seat_id"]!] = Date(timeIntervalSince1970: Double(Int64(row["ms"]!)!) / 1000)
    }
    for result in results where result.answer.errorCode != nil && !together {
        let free = layout.keys.filter { seat in takenAt[seat].map { $0 > result.answeredAt } ?? true }
        if free.count >= result.quantity {
            outcome.unjustifiedRefusals.append(
                "a request of \(result.quantity) was refused at \(result.answeredAt) while \(free.count) seats were free"
            )
        }
    }
    for result in results where result.answer.errorCode != nil && together {
        // Free, by the history, when the refusal arrived: never taken, or taken later.
        for (rowKey, seats) in rows {
            var run = 0
            var last = Int.min
            for number in seats.keys.sorted() {
                let seat = seats[number]!
                let free = takenAt[seat].map { $0 > result.answeredAt } ?? true
                run = free ? (number == last + 1 ? run + 1 : 1) : 0
                last = number
                if run >= result.quantity {
                    outcome.unjustifiedRefusals.append(
                        "a request of \(result.quantity) was refused at \(result.answeredAt) while \(rowKey) had \(run) free seats up to \(number)"
                    )
                    break
                }
            }
        }
    }
    return outcome
}

/// The control of the rush tests (test-only; never in production code): best-available without skipping
/// locked seats. It reads the best block from its snapshot and claims it with `inventory_hold`, which waits
/// for the seats' locks: concurrent requests choose the same block, and all but one are refused although
/// other blocks are free. The rush check must see that.
let naiveBestAvailableSQL = """
    CREATE OR REPLACE FUNCTION inventory_hold_best(p_hold_id text, p_showtime_id text, p_quantity integer,
                                                   p_section text, p_category text, p_together boolean,
                                                   p_user_id text, p_ttl_seconds integer)
    RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
    DECLARE
        v_chosen text[];
    BEGIN
        IF NOT coalesce(p_together, false) THEN
            SELECT array_agg(c.seat_id) INTO v_chosen
              FROM (SELECT s.seat_id FROM seat_states s JOIN inventory_seat_order(p_showtime_id) o ON o.seat_id = s.seat_id
                     WHERE s.showtime_id = p_showtime_id
                       AND (s.state = 'available' OR (s.state = 'held' AND s.hold_expires_at <= now()))
                     ORDER BY o.rank_key, o.row_order, o.centre_distance, s.position LIMIT p_quantity) c;
            IF coalesce(cardinality(v_chosen), 0) < p_quantity THEN
                RETURN inventory_outcome('no_suitable_seats');
            END IF;
            RETURN inventory_hold(p_hold_id, p_showtime_id, v_chosen, p_user_id, NULL, NULL, p_ttl_seconds);
        END IF;
        WITH free AS (
            SELECT s.seat_id, s.section, s.seat_row, s.number, o.rank_key, o.row_order, o.row_centre
              FROM seat_states s JOIN inventory_seat_order(p_showtime_id) o ON o.seat_id = s.seat_id
             WHERE s.showtime_id = p_showtime_id AND s.seat_row IS NOT NULL AND s.number IS NOT NULL
               AND (s.state = 'available' OR (s.state = 'held' AND s.hold_expires_at <= now()))),
        runs AS (
            SELECT f.number, f.row_order, f.row_centre, lead(f.number, p_quantity - 1) OVER w AS last_number,
                   array_agg(f.seat_id) OVER (w ROWS BETWEEN CURRENT ROW AND p_quantity - 1 FOLLOWING) AS seat_ids,
                   max(f.rank_key) OVER (w ROWS BETWEEN CURRENT ROW AND p_quantity - 1 FOLLOWING) AS block_rank
              FROM free f WINDOW w AS (PARTITION BY f.section, f.seat_row ORDER BY f.number, f.seat_id))
        SELECT r.seat_ids INTO v_chosen FROM runs r WHERE r.last_number = r.number + p_quantity - 1
         ORDER BY r.block_rank, r.row_order, abs((r.number + r.last_number) / 2.0 - r.row_centre), r.number LIMIT 1;
        IF v_chosen IS NULL THEN
            RETURN inventory_outcome('no_suitable_seats');
        END IF;
        RETURN inventory_hold(p_hold_id, p_showtime_id, v_chosen, p_user_id, NULL, NULL, p_ttl_seconds);
    END $$;
    """
