-- Best-available holds under the per-user seat limit (issue 14's migration 7 meets issue 15's migration 8,
-- written at the same time). Migration 8's best-available hold claimed through inventory_hold directly, so a
-- user asking for quantities instead of seat ids passed MAX_SEATS_PER_USER. Here it takes migration 7's
-- lock and count first, as inventory_hold_limited does for a hold of named seats: the quantity is known
-- before any seat is chosen, so the count needs no seat ids. The advisory lock comes before any seat row
-- lock (the choice locks seats), the order migration 7 keeps everywhere, so it adds no deadlock.

-- seat_limit (seat_limit, seats_held) when `quantity` more seats would take the user past p_max_seats for
-- the showtime, else inventory_hold_best. NULL p_max_seats: no limit (and no lock).
CREATE FUNCTION inventory_hold_best_limited(p_hold_id text, p_showtime_id text, p_quantity integer, p_section text,
                                            p_category text, p_together boolean, p_user_id text, p_ttl_seconds integer,
                                            p_max_seats integer, p_count_purchased boolean)
RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
DECLARE
    v_held   integer;
    v_result inventory_hold_result;
BEGIN
    IF p_max_seats IS NOT NULL AND p_quantity IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext(p_user_id), hashtext(p_showtime_id));
        -- A statement after the lock: its snapshot has every hold of this user that committed before it.
        v_held := inventory_seats_held(p_user_id, p_showtime_id, coalesce(p_count_purchased, false));
        IF v_held + p_quantity > p_max_seats THEN
            v_result := inventory_outcome('seat_limit');
            v_result.seat_limit := p_max_seats;
            v_result.seats_held := v_held;
            RETURN v_result;
        END IF;
    END IF;
    RETURN inventory_hold_best(p_hold_id, p_showtime_id, p_quantity, p_section, p_category, p_together, p_user_id,
                               p_ttl_seconds);
END $$;

-- Migration 8's function with the limit: the same body, inventory_hold_best_limited in place of
-- inventory_hold_best, and a seat_limit refusal treated like the other refusals a redelivery may meet.
CREATE FUNCTION inventory_hold_best_idempotent(p_hold_id text, p_showtime_id text, p_quantity integer,
                                               p_section text, p_category text, p_together boolean, p_user_id text,
                                               p_key text, p_request_hash text, p_ttl_seconds integer,
                                               p_derived boolean, p_max_seats integer, p_count_purchased boolean)
RETURNS TABLE (replayed boolean, result inventory_hold_result) LANGUAGE plpgsql AS $$
DECLARE
    v_result inventory_hold_result;
BEGIN
    IF p_key IS NOT NULL AND p_request_hash IS NULL THEN
        RAISE EXCEPTION 'inventory_hold_best_idempotent: a key needs its request hash'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF p_key IS NOT NULL AND NOT p_derived THEN
        INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash)
        VALUES (p_user_id, p_key, p_request_hash)
        ON CONFLICT (user_id, idempotency_key) DO NOTHING;
        IF NOT FOUND THEN
            RETURN QUERY SELECT * FROM inventory_idempotent_answer(p_user_id, p_key, p_request_hash);
            RETURN;
        END IF;
    ELSIF p_key IS NOT NULL THEN
        RETURN QUERY SELECT * FROM inventory_idempotent_answer(p_user_id, p_key, p_request_hash) a WHERE a.replayed;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    v_result := inventory_hold_best_limited(p_hold_id, p_showtime_id, p_quantity, p_section, p_category, p_together,
                                            p_user_id, p_ttl_seconds, p_max_seats, p_count_purchased);

    IF p_key IS NOT NULL AND NOT p_derived THEN
        UPDATE idempotency_keys k
           SET hold_id = CASE WHEN v_result.outcome = 'created' THEN v_result.hold_id END,
               reply = CASE WHEN v_result.outcome = 'created' THEN NULL ELSE to_jsonb(v_result) END,
               decided_at = clock_timestamp()
         WHERE k.user_id = p_user_id AND k.idempotency_key = p_key;
    ELSIF p_key IS NOT NULL AND v_result.outcome = 'created' THEN
        INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, derived, hold_id)
        VALUES (p_user_id, p_key, p_request_hash, true, v_result.hold_id)
        ON CONFLICT (user_id, idempotency_key) DO NOTHING;
        IF NOT FOUND AND EXISTS (SELECT 1 FROM idempotency_keys k
                                  WHERE k.user_id = p_user_id AND k.idempotency_key = p_key
                                    AND k.request_hash = p_request_hash) THEN
            RAISE EXCEPTION 'hold %: message key % decided meanwhile', p_hold_id, p_key
                USING ERRCODE = 'serialization_failure';
        END IF;
    ELSIF p_key IS NOT NULL AND v_result.outcome IN ('unavailable', 'no_suitable_seats', 'seat_limit') THEN
        RETURN QUERY SELECT * FROM inventory_idempotent_answer(p_user_id, p_key, p_request_hash) a WHERE a.replayed;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY SELECT false, v_result;
END $$;

-- Migration 8's signature: the same, without a limit.
CREATE OR REPLACE FUNCTION inventory_hold_best_idempotent(p_hold_id text, p_showtime_id text, p_quantity integer,
                                                          p_section text, p_category text, p_together boolean,
                                                          p_user_id text, p_key text, p_request_hash text,
                                                          p_ttl_seconds integer, p_derived boolean)
RETURNS TABLE (replayed boolean, result inventory_hold_result) LANGUAGE sql AS $$
    SELECT * FROM inventory_hold_best_idempotent(p_hold_id, p_showtime_id, p_quantity, p_section, p_category,
                                                 p_together, p_user_id, p_key, p_request_hash, p_ttl_seconds,
                                                 p_derived, NULL, NULL)
$$;
