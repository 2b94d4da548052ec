import PostgresClient
import Testing

@testable import InventoryRPC

/// The database itself refuses a double hold or a double sale, whatever SQL a buggy caller sends.
@Suite("Storage: constraints")
struct StorageConstraintTests {
    /// Runs `sql` in its own transaction and returns the constraint that refused it (nil if it passed).
    private func refusal(_ connection: PostgresConnection, _ sql: String) -> String? {
        do {
            try connection.transaction { try $0.simpleQuery(sql) }
            return nil
        } catch let error as PostgresError {
            return error.constraint ?? error.sqlState ?? error.message
        } catch {
            return "\(error)"
        }
    }

    @Test("hand-written SQL that would double-hold, re-sell or corrupt a seat is refused")
    func guards() throws {
        try withTestDatabase { url in
            let connection = try TestDatabase.connect(url)
            defer { connection.close() }
            try connection.simpleQuery(
                """
                SELECT inventory_define_seats('show', ARRAY['A1', 'A2', 'A3', 'A4']);
                SELECT inventory_hold('live', 'show', ARRAY['A1'], 'u1', NULL, NULL, 600);
                SELECT inventory_hold('sold', 'show', ARRAY['A2'], 'u1', NULL, NULL, 600);
                SELECT inventory_purchase('sold', 'order-1', NULL);
                INSERT INTO holds (hold_id, showtime_id, user_id, seat_ids, expires_at)
                VALUES ('intruder', 'show', 'u2', ARRAY['A1', 'A2', 'A3'], now() + interval '10 minutes');
                """
            )
            let live = "hold_id = 'intruder', state = 'held', hold_expires_at = now() + interval '1 minute'"
            // A seat held by a live hold cannot be handed to another hold.
            #expect(
                refusal(connection, "UPDATE seat_states SET \(live) WHERE seat_id = 'A1'") == "seat_states_live_hold"
            )
            // A purchased seat never changes: not re-held, not re-sold, not freed, not deleted.
            #expect(
                refusal(connection, "UPDATE seat_states SET \(live) WHERE seat_id = 'A2'")
                    == "seat_states_purchased_is_final"
            )
            #expect(
                refusal(connection, "UPDATE seat_states SET hold_id = 'intruder' WHERE seat_id = 'A2'")
                    == "seat_states_purchased_is_final"
            )
            #expect(
                refusal(connection, "UPDATE seat_states SET state = 'available', hold_id = NULL WHERE seat_id = 'A2'")
                    == "seat_states_purchased_is_final"
            )
            #expect(
                refusal(connection, "DELETE FROM seat_states WHERE seat_id = 'A2'")
                    == "seat_states_not_deleted_while_taken"
            )
            // A seat is purchased only by the hold that holds it.
            #expect(
                refusal(
                    connection,
                    "UPDATE seat_states SET state = 'purchased', hold_id = 'intruder' WHERE seat_id = 'A3'"
                )
                    == "seat_states_purchased_by_holder"
            )
            #expect(
                refusal(
                    connection,
                    "UPDATE seat_states SET state = 'purchased', hold_id = 'intruder' WHERE seat_id = 'A1'"
                )
                    == "seat_states_purchased_by_holder"
            )
            // The seat's holder is recorded on the seat, and a hold's seat can only belong to its showtime.
            #expect(
                refusal(
                    connection,
                    "UPDATE seat_states SET state = 'held', hold_expires_at = now() WHERE seat_id = 'A3'"
                )
                    == "seat_states_holder"
            )
            #expect(
                refusal(connection, "UPDATE seat_states SET hold_id = 'live' WHERE seat_id = 'A3'")
                    == "seat_states_holder"
            )
            #expect(
                refusal(connection, "UPDATE seat_states SET state = 'held', hold_id = 'intruder' WHERE seat_id = 'A3'")
                    == "seat_states_held_expires"
            )
            #expect(
                refusal(
                    connection,
                    "UPDATE seat_states SET state = 'held', hold_id = 'nobody', hold_expires_at = now() WHERE seat_id = 'A3'"
                )
                    == "seat_states_hold_fk"
            )
            #expect(
                refusal(connection, "UPDATE seat_states SET state = 'bogus', hold_id = 'intruder' WHERE seat_id = 'A3'")
                    == "seat_states_state_check"
            )
            // Holds: a purchase has an order, a finished hold never changes, a key belongs to one hold per user.
            #expect(
                refusal(connection, "UPDATE holds SET status = 'purchased' WHERE hold_id = 'live'")
                    == "holds_purchased_has_order"
            )
            #expect(
                refusal(connection, "UPDATE holds SET status = 'active' WHERE hold_id = 'sold'") == "holds_final_status"
            )
            #expect(
                refusal(connection, "UPDATE holds SET order_id = 'order-2' WHERE hold_id = 'sold'")
                    == "holds_final_status"
            )
            #expect(
                refusal(
                    connection,
                    """
                    INSERT INTO holds (hold_id, showtime_id, user_id, seat_ids, expires_at, idempotency_key, request_hash)
                    VALUES ('k1', 'show', 'u3', ARRAY['A4'], now(), 'key', 'h1'), ('k2', 'show', 'u3', ARRAY['A4'], now(), 'key', 'h2')
                    """
                ) == "holds_user_idempotency_key"
            )
            // An outbox row's payload carries its own eventId.
            #expect(
                refusal(
                    connection,
                    "INSERT INTO outbox (hold_id, event_type, payload) VALUES ('live', 'hold.created', '{\"eventId\": \"x\"}')"
                ) == "outbox_payload_event_id"
            )
            // And after all that, A1 is still the live hold's, A2 still sold.
            let seats = try connection.query("SELECT seat_id, state, hold_id FROM seat_states ORDER BY position").rows
            #expect(seats.map { $0["state"] } == ["held", "purchased", "available", "available"])
            #expect(seats.map { $0["hold_id"] } == ["live", "sold", nil, nil])
        }
    }
}
