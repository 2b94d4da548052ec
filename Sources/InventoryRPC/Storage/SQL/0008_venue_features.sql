-- Venue features (issue 15, decision 0018): seat metadata, best-available holds, hold extensions.
--
-- Nothing here redefines a function of an earlier migration: the new operations are new functions, and a
-- best-available hold, once it has chosen and locked its seats, claims them through inventory_hold itself,
-- so every rule of a hold (the claim, the event, and whatever later migrations add there) applies to it.

-- 1. Seat metadata. A seat's metadata is not its state: changing it bumps no version and publishes no event.
ALTER TABLE seat_states
    ADD COLUMN section  text,
    ADD COLUMN seat_row text,
    ADD COLUMN number   integer,
    ADD COLUMN category text,
    ADD COLUMN rank     integer;

-- A together hold locks the seats of one block: one row's seats by number.
CREATE INDEX seat_states_row_number ON seat_states (showtime_id, seat_row, number) WHERE seat_row IS NOT NULL;

-- 3. hold.extended is an event like the others.
ALTER TABLE outbox DROP CONSTRAINT outbox_event_type_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_event_type_check
    CHECK (event_type IN ('hold.created', 'hold.extended', 'hold.released', 'hold.expired', 'seats.purchased'));

-- availability with each seat's metadata (columns added at the end; the order of seats is the seat map's).
DROP FUNCTION inventory_availability(text);
CREATE FUNCTION inventory_availability(p_showtime_id text)
RETURNS TABLE (seat_id text, state text, hold_expires_at_ms bigint, version bigint, section text, seat_row text,
               number integer, category text, rank integer) LANGUAGE sql STABLE AS $$
    SELECT s.seat_id,
           CASE WHEN s.state = 'held' AND s.hold_expires_at <= now() THEN 'available' ELSE s.state END,
           CASE WHEN s.state = 'held' AND s.hold_expires_at > now() THEN inventory_epoch_ms(s.hold_expires_at) END,
           s.version + CASE WHEN s.state = 'held' AND s.hold_expires_at <= now() THEN 1 ELSE 0 END,
           s.section, s.seat_row, s.number, s.category, s.rank
      FROM seat_states s
     WHERE s.showtime_id = p_showtime_id
     ORDER BY s.position
$$;

-- The seats of a seats.define request, one row per seat id (its first occurrence wins), from p_seats:
-- [{seatId, meta, section, row, number, category, rank}] in request order; `meta` false for a plain id.
CREATE FUNCTION inventory_define_input(p_seats jsonb)
RETURNS TABLE (seat_id text, ord bigint, meta boolean, section text, seat_row text, number integer, category text,
               rank integer) LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT ON (e.value ->> 'seatId')
           e.value ->> 'seatId', e.ord, coalesce((e.value ->> 'meta')::boolean, false),
           e.value ->> 'section', e.value ->> 'row', (e.value ->> 'number')::integer, e.value ->> 'category',
           (e.value ->> 'rank')::integer
      FROM jsonb_array_elements(p_seats) WITH ORDINALITY e(value, ord)
     ORDER BY e.value ->> 'seatId', e.ord
$$;

-- seats.define with metadata: outcome `ok`, or `unavailable` (+ the seats whose metadata would change while
-- they are held by a live hold or purchased: nothing is written then). A plain seat id never changes an
-- existing seat; a seat object sets exactly the metadata it gives (a field left out is cleared). Serialized
-- per showtime like inventory_define_seats, and the existing seats concerned are locked in seat_id order (the
-- claims' order), so a hold cannot take one between the check and the update.
CREATE FUNCTION inventory_define_seat_map(p_showtime_id text, p_seats jsonb)
RETURNS TABLE (outcome text, seat_count integer, added integer, updated integer, problem_seat_ids text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_max     integer;
    v_added   integer;
    v_updated integer;
    v_blocked text[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('inventory_define_seats'), hashtext(p_showtime_id));

    SELECT array_agg(l.seat_id ORDER BY l.ord) FILTER (WHERE NOT (l.state = 'available'
                                                                  OR (l.state = 'held' AND l.hold_expires_at <= now())))
      INTO v_blocked
      FROM (SELECT s.seat_id, i.ord, s.state, s.hold_expires_at
              FROM seat_states s JOIN inventory_define_input(p_seats) i ON i.seat_id = s.seat_id
             WHERE s.showtime_id = p_showtime_id AND i.meta
               AND (s.section, s.seat_row, s.number, s.category, s.rank)
                   IS DISTINCT FROM (i.section, i.seat_row, i.number, i.category, i.rank)
             ORDER BY s.seat_id
               FOR UPDATE OF s) l;
    IF v_blocked IS NOT NULL THEN
        RETURN QUERY SELECT 'unavailable'::text, NULL::integer, NULL::integer, NULL::integer, v_blocked;
        RETURN;
    END IF;

    UPDATE seat_states s
       SET section = i.section, seat_row = i.seat_row, number = i.number, category = i.category, rank = i.rank,
           updated_at = now()
      FROM inventory_define_input(p_seats) i
     WHERE s.showtime_id = p_showtime_id AND s.seat_id = i.seat_id AND i.meta
       AND (s.section, s.seat_row, s.number, s.category, s.rank)
           IS DISTINCT FROM (i.section, i.seat_row, i.number, i.category, i.rank);
    GET DIAGNOSTICS v_updated = ROW_COUNT;

    SELECT coalesce(max(s.position), 0) INTO v_max FROM seat_states s WHERE s.showtime_id = p_showtime_id;
    INSERT INTO seat_states AS s (showtime_id, seat_id, position, state, section, seat_row, number, category, rank)
    SELECT p_showtime_id, n.seat_id, v_max + row_number() OVER (ORDER BY n.ord), 'available',
           n.section, n.seat_row, n.number, n.category, n.rank
      FROM inventory_define_input(p_seats) n
     WHERE NOT EXISTS (SELECT 1 FROM seat_states e WHERE e.showtime_id = p_showtime_id AND e.seat_id = n.seat_id)
    ON CONFLICT (showtime_id, seat_id) DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;

    RETURN QUERY SELECT 'ok'::text, (SELECT count(*)::integer FROM seat_states s WHERE s.showtime_id = p_showtime_id),
                        v_added, v_updated, NULL::text[];
END $$;

-- 2. Best available.
--
-- What best-available orders seats by, for every seat of a showtime: rank (lower first; none after every
-- ranked seat), then the row (rows in seat map order: the position of the row's first seat), then the
-- distance from the row's centre (the middle of its lowest and highest number). A row is (section, row).
CREATE FUNCTION inventory_seat_order(p_showtime_id text)
RETURNS TABLE (seat_id text, rank_key bigint, row_order integer, row_centre float8, centre_distance float8)
LANGUAGE sql STABLE AS $$
    SELECT s.seat_id,
           coalesce(s.rank::bigint, 9223372036854775807),
           min(s.position) OVER w,
           (min(s.number) OVER w + max(s.number) OVER w) / 2.0::float8,
           abs(s.number - (min(s.number) OVER w + max(s.number) OVER w) / 2.0::float8)
      FROM seat_states s
     WHERE s.showtime_id = p_showtime_id
    WINDOW w AS (PARTITION BY s.section, s.seat_row)
$$;

-- Chooses p_quantity seats and holds them (through inventory_hold), or answers `no_suitable_seats`.
-- Outcomes: those of inventory_hold, and showtime_not_found, no_suitable_seats.
--
-- Race-free without waiting: a candidate seat another in-flight request has locked is skipped, never
-- waited for. Seats one at a time (not together): the best claimable seats, FOR UPDATE SKIP LOCKED. Together:
-- the candidate blocks (p_quantity claimable seats of one row with consecutive numbers) best first; each
-- block's seats are locked in seat_id order with NOWAIT inside a subtransaction, and a block that cannot be
-- locked whole (a seat locked by another request, or taken since the candidates were read) is let go at
-- once (its locks roll back with the subtransaction) and the next one is tried. Two requests locking in one
-- global order and each stopping at its first conflict can never both fail on each other's blocks. A
-- request that cannot find enough releases what it locked in the same way, so it never makes a request
-- that could have succeeded fail.
CREATE FUNCTION inventory_hold_best(p_hold_id text, p_showtime_id text, p_quantity integer, p_section text,
                                    p_category text, p_together boolean, p_user_id text, p_ttl_seconds integer)
RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz := now();
    v_chosen text[];
    v_block  record;
    v_locked integer;
BEGIN
    IF p_quantity IS NULL OR p_quantity < 1 OR p_ttl_seconds IS NULL OR p_ttl_seconds < 1 THEN
        RAISE EXCEPTION 'inventory_hold_best: the quantity and the TTL must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM seat_states s WHERE s.showtime_id = p_showtime_id) THEN
        RETURN inventory_outcome('showtime_not_found');
    END IF;

    IF NOT coalesce(p_together, false) THEN
        BEGIN
            SELECT array_agg(l.seat_id ORDER BY l.rank_key, l.row_order, l.centre_distance NULLS LAST, l.position)
              INTO v_chosen
              FROM (SELECT s.seat_id, o.rank_key, o.row_order, o.centre_distance, s.position
                      FROM seat_states s
                      JOIN inventory_seat_order(p_showtime_id) o ON o.seat_id = s.seat_id
                     WHERE s.showtime_id = p_showtime_id
                       AND (p_section IS NULL OR s.section = p_section)
                       AND (p_category IS NULL OR s.category = p_category)
                       AND (s.state = 'available' OR (s.state = 'held' AND s.hold_expires_at <= v_now))
                     ORDER BY o.rank_key, o.row_order, o.centre_distance NULLS LAST, s.position
                     LIMIT p_quantity
                       FOR UPDATE OF s SKIP LOCKED) l;
            IF coalesce(cardinality(v_chosen), 0) < p_quantity THEN
                RAISE EXCEPTION USING ERRCODE = 'IV001';
            END IF;
        EXCEPTION WHEN SQLSTATE 'IV001' THEN
            v_chosen := NULL;
        END;
    ELSE
        -- Blocks are named by their row and first number (no per-block arrays: on a 2,000-seat map that
        -- halves the query); the lock statement reads the block's seats itself.
        FOR v_block IN
            WITH free AS (
                SELECT s.section, s.seat_row, s.number, o.rank_key, o.row_order, o.row_centre
                  FROM seat_states s
                  JOIN inventory_seat_order(p_showtime_id) o ON o.seat_id = s.seat_id
                 WHERE s.showtime_id = p_showtime_id AND s.seat_row IS NOT NULL AND s.number IS NOT NULL
                   AND (p_section IS NULL OR s.section = p_section)
                   AND (p_category IS NULL OR s.category = p_category)
                   AND (s.state = 'available' OR (s.state = 'held' AND s.hold_expires_at <= v_now))),
            runs AS (
                SELECT f.section, f.seat_row, f.number, f.row_order, f.row_centre,
                       lead(f.number, p_quantity - 1) OVER w AS last_number,
                       max(f.rank_key) OVER (w ROWS BETWEEN CURRENT ROW AND p_quantity - 1 FOLLOWING) AS block_rank
                  FROM free f
                WINDOW w AS (PARTITION BY f.section, f.seat_row ORDER BY f.number))
            SELECT r.section, r.seat_row, r.number
              FROM runs r
             WHERE r.last_number = r.number + p_quantity - 1
             ORDER BY r.block_rank, r.row_order, abs((r.number + r.last_number) / 2.0::float8 - r.row_centre), r.number
        LOOP
            BEGIN
                SELECT count(DISTINCT l.number)::integer, array_agg(l.seat_id ORDER BY l.number, l.seat_id)
                  INTO v_locked, v_chosen
                  FROM (SELECT s.seat_id, s.number FROM seat_states s
                         WHERE s.showtime_id = p_showtime_id AND s.section IS NOT DISTINCT FROM v_block.section
                           AND s.seat_row = v_block.seat_row
                           AND s.number BETWEEN v_block.number AND v_block.number + p_quantity - 1
                           AND (p_category IS NULL OR s.category = p_category)
                           AND (s.state = 'available' OR (s.state = 'held' AND s.hold_expires_at <= v_now))
                         ORDER BY s.seat_id
                           FOR UPDATE NOWAIT) l;
                IF v_locked <> p_quantity OR cardinality(v_chosen) <> p_quantity THEN
                    RAISE EXCEPTION USING ERRCODE = 'IV001';
                END IF;
            EXCEPTION WHEN lock_not_available OR SQLSTATE 'IV001' THEN
                v_chosen := NULL;
            END;
            EXIT WHEN v_chosen IS NOT NULL;
        END LOOP;
    END IF;

    IF v_chosen IS NULL THEN
        RETURN inventory_outcome('no_suitable_seats');
    END IF;
    -- The seats are locked by this transaction: inventory_hold finds them claimable and holds them.
    RETURN inventory_hold(p_hold_id, p_showtime_id, v_chosen, p_user_id, NULL, NULL, p_ttl_seconds);
END $$;

-- A best-available hold with idempotency: inventory_hold_idempotent's rules (migration 6), around
-- inventory_hold_best. A refusal (no_suitable_seats) is kept for a caller's key like any refusal.
CREATE FUNCTION inventory_hold_best_idempotent(p_hold_id text, p_showtime_id text, p_quantity integer,
                                               p_section text, p_category text, p_together boolean, p_user_id text,
                                               p_key text, p_request_hash text, p_ttl_seconds integer,
                                               p_derived boolean)
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

    v_result := inventory_hold_best(p_hold_id, p_showtime_id, p_quantity, p_section, p_category, p_together,
                                    p_user_id, p_ttl_seconds);

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
    ELSIF p_key IS NOT NULL AND v_result.outcome IN ('unavailable', 'no_suitable_seats') THEN
        RETURN QUERY SELECT * FROM inventory_idempotent_answer(p_user_id, p_key, p_request_hash) a WHERE a.replayed;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY SELECT false, v_result;
END $$;

-- 3. Hold extension: outcome ok | not_found | not_owned | not_active | expired | extension_limit.
-- The new expiry is min(now + TTL rounded up to the second, created + MAX_HOLD_SECONDS rounded down): whole
-- seconds like every expiresAt, and never past the cap. At the cap already: extension_limit. A hold whose TTL
-- has not been used up yet (the new expiry would not be later) is answered as it stands, with no event (rule
-- 8: an event names only what it changed). The hold row lock orders it with a purchase, a release and the
-- sweep (which skips locked holds and re-checks expires_at): exactly one of them acts on a hold at its end.
-- Every seat must still be this hold's (as for a purchase); its seats' hold_expires_at move with the hold's,
-- which gives each a new version (migration 5's trigger), and hold.extended names them with those versions.
CREATE FUNCTION inventory_extend_hold(p_hold_id text, p_user_id text, p_ttl_seconds integer,
                                      p_max_hold_seconds integer)
RETURNS inventory_hold_result LANGUAGE plpgsql AS $$
DECLARE
    v_hold    holds;
    v_ready   integer;
    v_cap     timestamptz;
    v_expires timestamptz;
BEGIN
    IF p_ttl_seconds IS NULL OR p_ttl_seconds < 1 OR p_max_hold_seconds IS NULL OR p_max_hold_seconds < 1 THEN
        RAISE EXCEPTION 'inventory_extend_hold: the TTL and the longest hold must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v_hold FROM holds h WHERE h.hold_id = p_hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN inventory_outcome('not_found');
    END IF;
    IF p_user_id IS NOT NULL AND v_hold.user_id <> p_user_id THEN
        RETURN inventory_outcome('not_owned');
    END IF;
    IF v_hold.status IN ('released', 'purchased') THEN
        RETURN inventory_outcome('not_active');
    END IF;
    IF v_hold.status = 'expired' OR v_hold.expires_at <= now() THEN
        RETURN inventory_outcome('expired');
    END IF;

    SELECT count(*)::integer INTO v_ready
      FROM (SELECT 1 FROM seat_states s
             WHERE s.showtime_id = v_hold.showtime_id AND s.seat_id = ANY (v_hold.seat_ids)
               AND s.hold_id = p_hold_id AND s.state = 'held'
             ORDER BY s.seat_id
               FOR UPDATE) l;
    IF v_ready <> cardinality(v_hold.seat_ids) THEN
        RETURN inventory_outcome('expired');
    END IF;

    v_cap := to_timestamp(floor(extract(epoch FROM v_hold.created_at + make_interval(secs => p_max_hold_seconds))));
    IF v_hold.expires_at >= v_cap THEN
        RETURN inventory_outcome('extension_limit');
    END IF;
    v_expires := least(inventory_ceil_second(now() + make_interval(secs => p_ttl_seconds)), v_cap);
    IF v_expires <= v_hold.expires_at THEN
        RETURN inventory_result('ok', v_hold);
    END IF;

    UPDATE holds h SET expires_at = v_expires, updated_at = now() WHERE h.hold_id = p_hold_id RETURNING * INTO v_hold;
    UPDATE seat_states s
       SET hold_expires_at = v_expires, updated_at = now()
     WHERE s.showtime_id = v_hold.showtime_id AND s.seat_id = ANY (v_hold.seat_ids)
       AND s.hold_id = p_hold_id AND s.state = 'held';
    PERFORM inventory_emit('hold.extended', v_hold);
    RETURN inventory_result('ok', v_hold);
END $$;
