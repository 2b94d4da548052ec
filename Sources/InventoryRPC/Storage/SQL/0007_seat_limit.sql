-- The per-user seat limit (INTERFACE.md "Limits", issue 14, decision 0015): a user holds at most
-- MAX_SEATS_PER_USER seats of one showtime in live holds (and, when SEAT_LIMIT_COUNTS_PURCHASED, in
-- purchased ones too), counted by the database in the transaction that claims.
--
-- Race-free by a transaction-level advisory lock per (user, showtime), taken before the count: two holds by
-- one user for one showtime decide one after the other, and the second counts (in a statement of its own,
-- so with a snapshot taken after the first committed, READ COMMITTED) the seats the first took. The lock is
-- released at COMMIT or ROLLBACK, after the first's rows became visible. It is taken before any seat row
-- lock, and nothing takes it while holding one (release, purchase and the sweep never take it), so it adds
-- no deadlock. Holds of different users, or of other showtimes, never wait for each other (unless two keys
-- hash alike, which only makes them take turns).
--
-- Redefined here: inventory_hold_result gains seat_limit and seats_held (a refusal's details.limit and
-- details.held), and with it its two constructors; inventory_hold_idempotent takes the limit. A refusal
-- (`seat_limit`) is a decision: a caller's key keeps it like any other (rule 9); nothing else is written.

ALTER TYPE inventory_hold_result ADD ATTRIBUTE seat_limit integer, ADD ATTRIBUTE seats_held integer;

CREATE OR REPLACE FUNCTION inventory_result(p_outcome text, p_hold holds, p_problem_seat_ids text[] DEFAULT NULL)
RETURNS inventory_hold_result LANGUAGE sql STABLE AS $$
    SELECT ROW(p_outcome, p_hold.hold_id, p_hold.showtime_id, p_hold.user_id, p_hold.seat_ids,
               CASE WHEN p_hold.status = 'active' AND p_hold.expires_at <= now() THEN 'expired'
                    ELSE p_hold.status END,
               inventory_epoch_ms(p_hold.expires_at), p_hold.order_id, p_problem_seat_ids,
               NULL, NULL)::inventory_hold_result
$$;

CREATE OR REPLACE FUNCTION inventory_outcome(p_outcome text, p_problem_seat_ids text[] DEFAULT NULL)
RETURNS inventory_hold_result LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(p_outcome, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p_problem_seat_ids, NULL, NULL)::inventory_hold_result
$$;

-- The user's count: the lookups by (user, showtime) the limit makes on every hold.
CREATE INDEX holds_user_showtime ON holds (user_id, showtime_id);

-- The seats of one showtime in a user's live holds (+ purchased ones when p_count_purchased), as this
-- statement's snapshot sees them. Live: active and before expires_at by the transaction's clock (rule 3).
-- plpgsql, not sql: called from plpgsql, a sql function is planned again on every call (160 us measured);
-- plpgsql keeps its plan for the session (35 us with the lock, decision 0015).
CREATE FUNCTION inventory_seats_held(p_user_id text, p_showtime_id text, p_count_purchased boolean)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(sum(cardinality(h.seat_ids)), 0)::integer
              FROM holds h
             WHERE h.user_id = p_user_id AND h.showtime_id = p_showtime_id
               AND ((h.status = 'active' AND h.expires_at > now()) OR (p_count_purchased AND h.status = 'purchased')));
END $$;

-- hold with the seat limit: `seat_limit` (seat_limit, seats_held) when the hold would take the user past
-- p_max_seats for the showtime, else inventory_hold. NULL p_max_seats: no limit (and no lock).
CREATE FUNCTION inventory_hold_limited(p_hold_id text, p_showtime_id text, p_seat_ids text[], p_user_id text,
                                       p_ttl_seconds integer, p_max_seats integer, p_count_purchased boolean)
RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
DECLARE
    v_held   integer;
    v_result inventory_hold_result;
BEGIN
    IF p_max_seats IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext(p_user_id), hashtext(p_showtime_id));
        -- A statement after the lock: its snapshot has every hold of this user that committed before it.
        v_held := inventory_seats_held(p_user_id, p_showtime_id, coalesce(p_count_purchased, false));
        IF v_held + coalesce(cardinality(p_seat_ids), 0) > p_max_seats THEN
            v_result := inventory_outcome('seat_limit');
            v_result.seat_limit := p_max_seats;
            v_result.seats_held := v_held;
            RETURN v_result;
        END IF;
    END IF;
    RETURN inventory_hold(p_hold_id, p_showtime_id, p_seat_ids, p_user_id, NULL, NULL, p_ttl_seconds);
END $$;

-- Migration 6's function with the limit: the same body, inventory_hold_limited in place of inventory_hold.
-- (The 8-parameter form stays, below, as "no limit": what the store called before this migration.)
CREATE FUNCTION inventory_hold_idempotent(p_hold_id text, p_showtime_id text, p_seat_ids text[], p_user_id text,
                                          p_key text, p_request_hash text, p_ttl_seconds integer, p_derived boolean,
                                          p_max_seats integer, p_count_purchased boolean)
RETURNS TABLE (replayed boolean, result inventory_hold_result) LANGUAGE plpgsql AS $$
DECLARE
    v_result inventory_hold_result;
BEGIN
    IF p_key IS NOT NULL AND p_request_hash IS NULL THEN
        RAISE EXCEPTION 'inventory_hold_idempotent: a key needs its request hash'
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

    v_result := inventory_hold_limited(p_hold_id, p_showtime_id, p_seat_ids, p_user_id, p_ttl_seconds,
                                       p_max_seats, p_count_purchased);

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
    ELSIF p_key IS NOT NULL AND v_result.outcome IN ('unavailable', 'seat_limit') THEN
        -- A redelivery whose first delivery committed meanwhile: that delivery's hold counts against the
        -- limit (or holds the seats), and its answer is this one's.
        RETURN QUERY SELECT * FROM inventory_idempotent_answer(p_user_id, p_key, p_request_hash) a WHERE a.replayed;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY SELECT false, v_result;
END $$;

-- Migration 6's signature: the same, without a limit.
CREATE OR REPLACE FUNCTION inventory_hold_idempotent(p_hold_id text, p_showtime_id text, p_seat_ids text[],
                                                     p_user_id text, p_key text, p_request_hash text,
                                                     p_ttl_seconds integer, p_derived boolean)
RETURNS TABLE (replayed boolean, result inventory_hold_result) LANGUAGE sql AS $$
    SELECT * FROM inventory_hold_idempotent(p_hold_id, p_showtime_id, p_seat_ids, p_user_id, p_key, p_request_hash,
                                            p_ttl_seconds, p_derived, NULL, NULL)
$$;
