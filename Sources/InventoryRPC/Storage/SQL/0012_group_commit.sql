-- Group commit (issue 16 item 1, decision 0022): several holds decided in one transaction and one round trip
-- (BEGIN; SELECT ... FROM inventory_hold_batch(...); COMMIT), each with its own outcome exactly as if alone.
--
-- p_items: a JSON array, one object per request, in arrival order:
--   kind            'seats' (named seats) or 'best' (best available)
--   hold_id, showtime_id, user_id, key, request_hash, derived, ttl, max_seats, count_purchased
--   seat_ids        (kind seats) the requested seats
--   quantity, section, category, together   (kind best)
--   deadline        the caller's deadline, Unix epoch ms (or null)
--
-- Locks, in one global order, so batches never deadlock with each other, nor with release, purchase, extend
-- or the sweep:
--   1. the seat limit's advisory locks (user, showtime), in (hashtext(user), hashtext(showtime)) order;
--   2. the named seats of every request, in (showtime_id, seat_id) order;
--   3. then each request in turn; the only lock it can still wait for is an idempotency key a concurrent
--      duplicate inserted (best-available seats are chosen SKIP LOCKED, never waited for).
-- Everything that decides a hold takes these in this order (a request alone is a batch of one): release,
-- purchase, extend and the sweep take no advisory lock and lock seats in the same (showtime_id, seat_id)
-- order, after at most their own hold row, which no hold ever locks.
--
-- p_wait false (a batch of several): steps 1 and 2 never wait (pg_try_advisory_xact_lock, SKIP LOCKED). A
-- request whose advisory lock or any existing seat another transaction holds is `deferred`: nothing of it is
-- done here, and the caller decides it alone afterwards (p_wait true), so one contended request never holds
-- up the rest of its batch. p_wait true: steps 1 and 2 wait, bounded by the transaction's lock_timeout.
--
-- Each request runs in a subtransaction of its own (a plpgsql block with an exception handler): a request that
-- fails, or finishes past its deadline, rolls back alone, and the others keep their outcomes. Per request:
-- lock_timeout is the time left to its deadline; its deadline is checked again when it is done (SQLSTATE
-- IVDL1: rolled back, the caller answers nothing). Before COMMIT the earliest deadline of the requests kept
-- is checked once more (query_canceled: the whole batch rolls back and the caller decides again the requests
-- still in time), so no hold commits after its caller's deadline.
--
-- p_claim_sql: NULL in production (inventory_hold_idempotent). The control build passes its unsafe claim
-- (Storage/Control/unsafe_claim.sql, parameters $1-$10 as inventory_hold_idempotent's) to show the tests still
-- catch a double hold with group commit on.
CREATE FUNCTION inventory_hold_batch(p_items jsonb, p_wait boolean, p_claim_sql text DEFAULT NULL)
RETURNS TABLE (ord integer, deferred boolean, error_state text, error_message text, replayed boolean,
               result inventory_hold_result)
LANGUAGE plpgsql AS $$
DECLARE
    v_count     integer := jsonb_array_length(p_items);
    v_deferred  boolean[] := array_fill(false, ARRAY[greatest(v_count, 1)]);
    v_item      jsonb;
    v_lock      record;
    v_got       text[];
    v_deadline  bigint;
    v_earliest  bigint;
    v_left      bigint;
    v_row       record;
    v_result    inventory_hold_result;
BEGIN
    -- 1. The seat limit's advisory locks.
    FOR v_lock IN
        SELECT DISTINCT hashtext(i.value->>'user_id') AS u, hashtext(i.value->>'showtime_id') AS s
          FROM jsonb_array_elements(p_items) i
         WHERE i.value->>'max_seats' IS NOT NULL
         ORDER BY 1, 2
    LOOP
        IF p_wait THEN
            PERFORM pg_advisory_xact_lock(v_lock.u, v_lock.s);
        ELSIF NOT pg_try_advisory_xact_lock(v_lock.u, v_lock.s) THEN
            SELECT array_agg(CASE WHEN v_deferred[o.n::integer]
                                       OR (hashtext(o.value->>'user_id') = v_lock.u
                                           AND hashtext(o.value->>'showtime_id') = v_lock.s
                                           AND o.value->>'max_seats' IS NOT NULL)
                                  THEN true ELSE false END ORDER BY o.n)
              INTO v_deferred
              FROM jsonb_array_elements(p_items) WITH ORDINALITY o(value, n);
        END IF;
    END LOOP;

    -- 2. The named seats, in the order every claim locks in.
    IF p_wait THEN
        PERFORM 1 FROM seat_states s
          JOIN (SELECT DISTINCT i.value->>'showtime_id' AS showtime_id, r.seat_id
                  FROM jsonb_array_elements(p_items) i, jsonb_array_elements_text(i.value->'seat_ids') r(seat_id)
                 WHERE i.value->>'kind' = 'seats') w
            ON s.showtime_id = w.showtime_id AND s.seat_id = w.seat_id
         ORDER BY s.showtime_id, s.seat_id
           FOR UPDATE OF s;
    ELSE
        SELECT array_agg(l.showtime_id || chr(31) || l.seat_id) INTO v_got
          FROM (SELECT s.showtime_id, s.seat_id FROM seat_states s
                  JOIN (SELECT DISTINCT i.value->>'showtime_id' AS showtime_id, r.seat_id
                          FROM jsonb_array_elements(p_items) i,
                               jsonb_array_elements_text(i.value->'seat_ids') r(seat_id)
                         WHERE i.value->>'kind' = 'seats') w
                    ON s.showtime_id = w.showtime_id AND s.seat_id = w.seat_id
                 ORDER BY s.showtime_id, s.seat_id
                   FOR UPDATE OF s SKIP LOCKED) l;
        -- A request with an existing seat another transaction holds waits for no one here: deferred.
        SELECT array_agg(v_deferred[o.n::integer]
                         OR (o.value->>'kind' = 'seats' AND EXISTS (
                                SELECT 1 FROM seat_states s
                                 WHERE s.showtime_id = o.value->>'showtime_id'
                                   AND s.seat_id IN (SELECT jsonb_array_elements_text(o.value->'seat_ids'))
                                   AND NOT (s.showtime_id || chr(31) || s.seat_id = ANY (coalesce(v_got, '{}')))))
                         ORDER BY o.n)
          INTO v_deferred
          FROM jsonb_array_elements(p_items) WITH ORDINALITY o(value, n);
    END IF;

    -- 3. Each request in arrival order, in a subtransaction of its own.
    FOR i IN 0 .. v_count - 1 LOOP
        v_item := p_items->i;
        ord := i;
        deferred := v_deferred[i + 1];
        error_state := NULL;
        error_message := NULL;
        replayed := NULL;
        result := NULL;
        IF deferred THEN
            RETURN NEXT;
            CONTINUE;
        END IF;
        v_deadline := (v_item->>'deadline')::bigint;
        BEGIN
            IF v_deadline IS NOT NULL THEN
                v_left := v_deadline - inventory_epoch_ms(clock_timestamp());
                IF v_left <= 0 THEN
                    RAISE EXCEPTION 'deadline passed' USING ERRCODE = 'IVDL1';
                END IF;
                PERFORM set_config('lock_timeout', v_left || 'ms', true);
            ELSE
                PERFORM set_config('lock_timeout', '0', true);
            END IF;

            IF v_item->>'kind' = 'best' THEN
                SELECT * INTO v_row
                  FROM inventory_hold_best_idempotent(
                       v_item->>'hold_id', v_item->>'showtime_id', (v_item->>'quantity')::integer,
                       v_item->>'section', v_item->>'category', coalesce((v_item->>'together')::boolean, false),
                       v_item->>'user_id', v_item->>'key', v_item->>'request_hash', (v_item->>'ttl')::integer,
                       coalesce((v_item->>'derived')::boolean, false), (v_item->>'max_seats')::integer,
                       (v_item->>'count_purchased')::boolean) r;
                replayed := v_row.replayed;
                result := v_row.result;
            ELSIF p_claim_sql IS NULL THEN
                SELECT * INTO v_row
                  FROM inventory_hold_idempotent(
                       v_item->>'hold_id', v_item->>'showtime_id',
                       ARRAY(SELECT jsonb_array_elements_text(v_item->'seat_ids')), v_item->>'user_id',
                       v_item->>'key', v_item->>'request_hash', (v_item->>'ttl')::integer,
                       coalesce((v_item->>'derived')::boolean, false), (v_item->>'max_seats')::integer,
                       (v_item->>'count_purchased')::boolean) r;
                replayed := v_row.replayed;
                result := v_row.result;
            ELSE
                EXECUTE p_claim_sql INTO v_result
                  USING v_item->>'hold_id', v_item->>'showtime_id',
                        ARRAY(SELECT jsonb_array_elements_text(v_item->'seat_ids')), v_item->>'user_id',
                        v_item->>'key', v_item->>'request_hash', (v_item->>'ttl')::integer,
                        coalesce((v_item->>'derived')::boolean, false), (v_item->>'max_seats')::integer,
                        (v_item->>'count_purchased')::boolean;
                replayed := false;
                result := v_result;
            END IF;

            IF v_deadline IS NOT NULL AND inventory_epoch_ms(clock_timestamp()) >= v_deadline THEN
                RAISE EXCEPTION 'deadline passed' USING ERRCODE = 'IVDL1';
            END IF;
            v_earliest := least(v_earliest, v_deadline);
        EXCEPTION
            WHEN SQLSTATE 'IVDL1' THEN
                error_state := 'IVDL1';
                error_message := 'the request''s deadline passed before its commit';
                replayed := NULL;
                result := NULL;
            WHEN OTHERS THEN
                error_state := SQLSTATE;
                error_message := SQLERRM;
                replayed := NULL;
                result := NULL;
        END;
        RETURN NEXT;
    END LOOP;

    PERFORM set_config('lock_timeout', '0', true);
    IF v_earliest IS NOT NULL AND inventory_epoch_ms(clock_timestamp()) >= v_earliest THEN
        RAISE EXCEPTION 'a deadline of the batch (%) passed before its commit', v_earliest
            USING ERRCODE = 'query_canceled';
    END IF;
END $$;
