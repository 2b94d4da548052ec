-- One function per operation: every operation is one round trip (SELECT * FROM inventory_...($1, ...)).
-- All of them judge expiry by now(), the database clock at the start of the transaction.

-- RFC 3339, UTC, milliseconds, `Z`: the event JSON's time format.
CREATE FUNCTION inventory_rfc3339(p_ts timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(p_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE FUNCTION inventory_ceil_second(p_ts timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT to_timestamp(ceil(extract(epoch FROM p_ts)))
$$;

CREATE FUNCTION inventory_epoch_ms(p_ts timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(extract(epoch FROM p_ts) * 1000)::bigint
$$;

-- The exact event body of INTERFACE.md.
CREATE FUNCTION inventory_event_payload(p_event_id uuid, p_type text, p_hold holds, p_occurred_at timestamptz)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'eventId', p_event_id::text,
               'type', p_type,
               'occurredAt', inventory_rfc3339(p_occurred_at),
               'showtimeId', p_hold.showtime_id,
               'holdId', p_hold.hold_id,
               'userId', p_hold.user_id,
               'seatIds', to_jsonb(p_hold.seat_ids))
        || CASE p_type
               WHEN 'hold.created' THEN jsonb_build_object('expiresAt', inventory_rfc3339(p_hold.expires_at))
               WHEN 'seats.purchased' THEN jsonb_build_object('orderId', p_hold.order_id)
               ELSE '{}'::jsonb
           END
$$;

CREATE FUNCTION inventory_emit(p_type text, p_hold holds) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_event_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO outbox (event_id, hold_id, event_type, payload)
    VALUES (v_event_id, p_hold.hold_id, p_type, inventory_event_payload(v_event_id, p_type, p_hold, now()));
END $$;

-- What every hold-returning operation answers. `status` is the hold as it stands by the database clock:
-- an active hold past expires_at is reported `expired` whether or not the sweep has marked it.
CREATE TYPE inventory_hold_result AS (
    outcome          text,
    hold_id          text,
    showtime_id      text,
    user_id          text,
    seat_ids         text[],
    status           text,
    expires_at_ms    bigint,
    order_id         text,
    problem_seat_ids text[]
);

CREATE FUNCTION inventory_result(p_outcome text, p_hold holds, p_problem_seat_ids text[] DEFAULT NULL)
RETURNS inventory_hold_result LANGUAGE sql STABLE AS $$
    SELECT ROW(p_outcome, p_hold.hold_id, p_hold.showtime_id, p_hold.user_id, p_hold.seat_ids,
               CASE WHEN p_hold.status = 'active' AND p_hold.expires_at <= now() THEN 'expired'
                    ELSE p_hold.status END,
               inventory_epoch_ms(p_hold.expires_at), p_hold.order_id, p_problem_seat_ids)::inventory_hold_result
$$;

CREATE FUNCTION inventory_outcome(p_outcome text, p_problem_seat_ids text[] DEFAULT NULL)
RETURNS inventory_hold_result LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(p_outcome, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p_problem_seat_ids)::inventory_hold_result
$$;

-- Frees the seats that still point at the hold (a newer hold may have taken a seat of a dead one), and
-- locks them first in (showtime_id, seat_id) order, the order every claim locks in, so a claim and a
-- release or sweep never deadlock.
CREATE FUNCTION inventory_free_seats(p_hold holds) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM seat_states s
     WHERE s.showtime_id = p_hold.showtime_id AND s.seat_id = ANY (p_hold.seat_ids) AND s.hold_id = p_hold.hold_id
     ORDER BY s.seat_id
       FOR UPDATE;
    UPDATE seat_states s
       SET state = 'available', hold_id = NULL, hold_expires_at = NULL, updated_at = now()
     WHERE s.showtime_id = p_hold.showtime_id AND s.seat_id = ANY (p_hold.seat_ids)
       AND s.hold_id = p_hold.hold_id AND s.state = 'held';
END $$;

-- hold: outcome created | replayed | key_reused | unavailable (+ problem seats) | unknown_seats (+ problem
-- seats) | showtime_not_found.
CREATE FUNCTION inventory_hold(p_hold_id text, p_showtime_id text, p_seat_ids text[], p_user_id text,
                               p_idempotency_key text, p_request_hash text, p_ttl_seconds integer)
RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
DECLARE
    v_now        timestamptz := now();
    -- Whole seconds, rounded up: replies print expiresAt with whole seconds (Contracts), so the
    -- instant printed is exactly the instant compared, and a hold never lives less than its TTL.
    v_expires_at timestamptz := inventory_ceil_second(now() + make_interval(secs => p_ttl_seconds));
    v_known      integer;
    v_taken      text[];
    v_hold       holds;
    v_claimed    integer;
BEGIN
    -- The caller validates requests (Contracts); a bad one here is a bug, refused loudly.
    IF cardinality(p_seat_ids) IS NULL OR cardinality(p_seat_ids) = 0 OR array_position(p_seat_ids, NULL) IS NOT NULL
       OR (SELECT count(DISTINCT r) FROM unnest(p_seat_ids) r) <> cardinality(p_seat_ids) OR p_ttl_seconds < 1 THEN
        RAISE EXCEPTION 'inventory_hold: seat ids must be 1 or more distinct non-null values and the TTL positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- 1. Lock the requested seats in seat_id order (multi-seat holds never deadlock each other); count the
    --    known ones and list those not claimable. A seat whose hold is dead counts as available.
    SELECT count(*)::integer,
           array_agg(l.seat_id ORDER BY array_position(p_seat_ids, l.seat_id))
               FILTER (WHERE NOT (l.state = 'available' OR (l.state = 'held' AND l.hold_expires_at <= v_now)))
      INTO v_known, v_taken
      FROM (SELECT s.seat_id, s.state, s.hold_expires_at
              FROM seat_states s
             WHERE s.showtime_id = p_showtime_id AND s.seat_id = ANY (p_seat_ids)
             ORDER BY s.seat_id
               FOR UPDATE) l;

    IF v_known < cardinality(p_seat_ids) THEN
        IF v_known = 0 AND NOT EXISTS (SELECT 1 FROM seat_states s WHERE s.showtime_id = p_showtime_id) THEN
            RETURN inventory_outcome('showtime_not_found');
        END IF;
        RETURN inventory_outcome('unknown_seats', ARRAY(
            SELECT r.seat_id FROM unnest(p_seat_ids) WITH ORDINALITY r(seat_id, ord)
             WHERE NOT EXISTS (SELECT 1 FROM seat_states s
                                WHERE s.showtime_id = p_showtime_id AND s.seat_id = r.seat_id)
             ORDER BY r.ord));
    END IF;

    -- 2. Idempotency. A duplicate that raced us to these seats waited for their locks above, so its hold
    --    is committed and visible now: it is replayed, never answered "unavailable".
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO v_hold FROM holds h WHERE h.user_id = p_user_id AND h.idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN inventory_result(CASE WHEN v_hold.request_hash = p_request_hash THEN 'replayed'
                                         ELSE 'key_reused' END, v_hold);
        END IF;
    END IF;

    -- 3. All or nothing: nothing has been written yet, so a conflict writes nothing.
    IF v_taken IS NOT NULL THEN
        RETURN inventory_outcome('unavailable', v_taken);
    END IF;

    -- 4. The hold row. A concurrent request with the same key (and other seats) blocks on the unique index
    --    until it commits; then this inserts nothing and answers with that hold.
    INSERT INTO holds AS h (hold_id, showtime_id, user_id, seat_ids, status, expires_at,
                            idempotency_key, request_hash, created_at, updated_at)
    VALUES (p_hold_id, p_showtime_id, p_user_id, p_seat_ids, 'active', v_expires_at,
            p_idempotency_key, p_request_hash, v_now, v_now)
    ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING * INTO v_hold;
    IF NOT FOUND THEN
        SELECT * INTO v_hold FROM holds h WHERE h.user_id = p_user_id AND h.idempotency_key = p_idempotency_key;
        RETURN inventory_result(CASE WHEN v_hold.request_hash = p_request_hash THEN 'replayed'
                                     ELSE 'key_reused' END, v_hold);
    END IF;

    -- 5. The claim: the conditional update is the arbiter (the locks above only order the waiting).
    UPDATE seat_states s
       SET state = 'held', hold_id = p_hold_id, hold_expires_at = v_expires_at, updated_at = v_now
     WHERE s.showtime_id = p_showtime_id AND s.seat_id = ANY (p_seat_ids)
       AND (s.state = 'available' OR (s.state = 'held' AND s.hold_expires_at <= v_now));
    GET DIAGNOSTICS v_claimed = ROW_COUNT;
    IF v_claimed <> cardinality(p_seat_ids) THEN
        -- Cannot happen with the rows locked above; if it ever does, nothing of this hold may commit.
        RAISE EXCEPTION 'hold %: claimed % of % seats', p_hold_id, v_claimed, cardinality(p_seat_ids)
            USING ERRCODE = 'internal_error';
    END IF;

    PERFORM inventory_emit('hold.created', v_hold);
    RETURN inventory_result('created', v_hold);
END $$;

-- release: outcome ok | not_found | not_owned | not_active. A released or expired hold is answered as it
-- stands. A dead hold the sweep has not marked yet is marked expired here, with its hold.expired event,
-- so that event is still written exactly once (the sweep will not find the hold again).
CREATE FUNCTION inventory_release(p_hold_id text, p_user_id text)
RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
DECLARE
    v_hold holds;
BEGIN
    SELECT * INTO v_hold FROM holds h WHERE h.hold_id = p_hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN inventory_outcome('not_found');
    END IF;
    IF p_user_id IS NOT NULL AND v_hold.user_id <> p_user_id THEN
        RETURN inventory_outcome('not_owned');
    END IF;
    IF v_hold.status = 'purchased' THEN
        RETURN inventory_outcome('not_active');
    END IF;
    IF v_hold.status <> 'active' THEN
        RETURN inventory_result('ok', v_hold);
    END IF;

    UPDATE holds h
       SET status = CASE WHEN h.expires_at <= now() THEN 'expired' ELSE 'released' END, updated_at = now()
     WHERE h.hold_id = p_hold_id
    RETURNING * INTO v_hold;
    PERFORM inventory_free_seats(v_hold);
    PERFORM inventory_emit(CASE v_hold.status WHEN 'expired' THEN 'hold.expired' ELSE 'hold.released' END, v_hold);
    RETURN inventory_result('ok', v_hold);
END $$;

-- purchase: outcome ok | not_found | not_owned | not_active | expired.
CREATE FUNCTION inventory_purchase(p_hold_id text, p_order_id text, p_user_id text)
RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
DECLARE
    v_hold  holds;
    v_ready integer;
BEGIN
    -- The hold row lock is what a racing expiry sweep (SKIP LOCKED) or release waits for or skips:
    -- exactly one of them acts on the hold.
    SELECT * INTO v_hold FROM holds h WHERE h.hold_id = p_hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN inventory_outcome('not_found');
    END IF;
    IF p_user_id IS NOT NULL AND v_hold.user_id <> p_user_id THEN
        RETURN inventory_outcome('not_owned');
    END IF;
    IF v_hold.status = 'purchased' THEN
        IF v_hold.order_id = p_order_id THEN
            RETURN inventory_result('ok', v_hold);
        END IF;
        RETURN inventory_outcome('not_active');
    END IF;
    IF v_hold.status = 'released' THEN
        RETURN inventory_outcome('not_active');
    END IF;
    IF v_hold.status = 'expired' OR v_hold.expires_at <= now() THEN
        RETURN inventory_outcome('expired');
    END IF;

    -- Every seat must still be this hold's: a claim that started after expires_at may have taken one
    -- while this transaction (started just before it) waited.
    SELECT count(*)::integer INTO v_ready
      FROM (SELECT 1 FROM seat_states s
             WHERE s.showtime_id = v_hold.showtime_id AND s.seat_id = ANY (v_hold.seat_ids)
               AND s.hold_id = p_hold_id AND s.state = 'held'
             ORDER BY s.seat_id
               FOR UPDATE) l;
    IF v_ready <> cardinality(v_hold.seat_ids) THEN
        RETURN inventory_outcome('expired');
    END IF;

    UPDATE seat_states s
       SET state = 'purchased', hold_expires_at = NULL, updated_at = now()
     WHERE s.showtime_id = v_hold.showtime_id AND s.seat_id = ANY (v_hold.seat_ids)
       AND s.hold_id = p_hold_id AND s.state = 'held';
    UPDATE holds h SET status = 'purchased', order_id = p_order_id, updated_at = now()
     WHERE h.hold_id = p_hold_id
    RETURNING * INTO v_hold;
    PERFORM inventory_emit('seats.purchased', v_hold);
    RETURN inventory_result('ok', v_hold);
END $$;

-- hold.get: outcome ok | not_found.
CREATE FUNCTION inventory_get_hold(p_hold_id text)
RETURNS inventory_hold_result LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT inventory_result('ok', h) FROM holds h WHERE h.hold_id = p_hold_id),
                    inventory_outcome('not_found'))
$$;

-- availability: the seats in definition order; a seat of a dead hold is available. No rows: no seat map.
CREATE FUNCTION inventory_availability(p_showtime_id text)
RETURNS TABLE (seat_id text, state text, hold_expires_at_ms bigint) LANGUAGE sql STABLE AS $$
    SELECT s.seat_id,
           CASE WHEN s.state = 'held' AND s.hold_expires_at <= now() THEN 'available' ELSE s.state END,
           CASE WHEN s.state = 'held' AND s.hold_expires_at > now() THEN inventory_epoch_ms(s.hold_expires_at) END
      FROM seat_states s
     WHERE s.showtime_id = p_showtime_id
     ORDER BY s.position
$$;

-- seats.define: adds the seats not there yet, after the existing ones, in the order given; never touches
-- an existing seat. Serialized per showtime so two definitions never race for positions.
CREATE FUNCTION inventory_define_seats(p_showtime_id text, p_seat_ids text[])
RETURNS TABLE (seat_count integer, added integer) LANGUAGE plpgsql AS $$
DECLARE
    v_max   integer;
    v_added integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('inventory_define_seats'), hashtext(p_showtime_id));
    SELECT coalesce(max(s.position), 0) INTO v_max FROM seat_states s WHERE s.showtime_id = p_showtime_id;
    INSERT INTO seat_states AS s (showtime_id, seat_id, position, state)
    SELECT p_showtime_id, n.seat_id, v_max + row_number() OVER (ORDER BY n.ord), 'available'
      FROM (SELECT r.seat_id, min(r.ord) AS ord
              FROM unnest(p_seat_ids) WITH ORDINALITY r(seat_id, ord)
             WHERE NOT EXISTS (SELECT 1 FROM seat_states e
                                WHERE e.showtime_id = p_showtime_id AND e.seat_id = r.seat_id)
             GROUP BY r.seat_id) n
    ON CONFLICT (showtime_id, seat_id) DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN QUERY SELECT (SELECT count(*)::integer FROM seat_states s WHERE s.showtime_id = p_showtime_id), v_added;
END $$;

-- The expiry sweep: up to p_batch dead active holds, oldest first, skipping those another sweeper,
-- a purchase or a release has locked. Each is marked expired, its seats that still point at it are
-- freed, and one hold.expired event is written. Returns what the caller needs to delete Redis locks.
CREATE FUNCTION inventory_expire_holds(p_batch integer)
RETURNS TABLE (hold_id text, showtime_id text, seat_ids text[]) LANGUAGE plpgsql AS $$
DECLARE
    v_ids  text[];
    v_hold holds;
BEGIN
    SELECT array_agg(d.hold_id ORDER BY d.expires_at, d.hold_id) INTO v_ids
      FROM (SELECT h.hold_id, h.expires_at FROM holds h
             WHERE h.status = 'active' AND h.expires_at <= now()
             ORDER BY h.expires_at
             LIMIT p_batch
               FOR UPDATE SKIP LOCKED) d;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- Seats of all of them, locked in the claims' order before any is changed.
    PERFORM 1 FROM holds h
      JOIN seat_states s ON s.showtime_id = h.showtime_id AND s.seat_id = ANY (h.seat_ids) AND s.hold_id = h.hold_id
     WHERE h.hold_id = ANY (v_ids)
     ORDER BY s.showtime_id, s.seat_id
       FOR UPDATE OF s;

    FOR v_hold IN
        UPDATE holds h SET status = 'expired', updated_at = now() WHERE h.hold_id = ANY (v_ids) RETURNING *
    LOOP
        PERFORM inventory_free_seats(v_hold);
        PERFORM inventory_emit('hold.expired', v_hold);
        hold_id := v_hold.hold_id;
        showtime_id := v_hold.showtime_id;
        seat_ids := v_hold.seat_ids;
        RETURN NEXT;
    END LOOP;
END $$;
