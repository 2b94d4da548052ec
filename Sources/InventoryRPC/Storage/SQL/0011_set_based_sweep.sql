-- The expiry sweep in set operations (issue 16 item 3, decision 0021). Per batch: one statement picks and
-- locks the due holds (SKIP LOCKED, as before), one locks their seats in the claims' order, and one statement
-- (a chain of data-modifying CTEs) marks the holds expired, frees their seats and writes their hold.expired
-- rows: no per-hold function calls or statements any more (migration 5's version was a loop of
-- inventory_free_seats + inventory_emit per hold, several statements each).
--
-- Every rule of the row-by-row version stays, by the same means:
--  * only seats that still point at the hold are freed (a newer hold may have taken one after expiresAt);
--    hold.expired names exactly those, in the hold's order, with the versions the update wrote (the
--    seat_states_version trigger: the version + 1 availability already showed since expiresAt), and
--    is published even when it names none (decision 0012);
--  * seat history comes from the outbox rows' trigger (decision 0019), one entry per freed seat at the
--    hold's expiresAt;
--  * a hold is swept once: the hold rows are locked FOR UPDATE SKIP LOCKED and re-checked (expires_at
--    <= now(), status active) under the lock, so two sweepers, or a sweeper and a purchase, release or
--    extension (which lock the hold row first), never both act on one hold;
--  * seats are locked in (showtime_id, seat_id) order before any is changed, the order every claim locks
--    in, so no deadlock with a rush; the batch (the caller's p_batch) bounds how long those locks are held.
--
-- Plans that do not depend on fresh statistics. The launch-night case is a mass expiry before autovacuum has
-- analyzed again: the holds were made minutes ago (holds analyzed when it had few active rows) on seats
-- analyzed when all were available. Measured on such a database (100,000 dead holds, psql): the planner then
--  * sorted every due hold to take the oldest 200 (33 ms a batch, whatever the batch size) instead of
--    reading the first 200 of the expiry index: the selection runs with enable_sort off
--    (inventory_due_holds), which leaves it only the index's order;
--  * joined the batch's seats by hashing a sequential scan of seat_states (12 ms a batch on 100,000 seats,
--    growing with the table), because it costs a primary-key lookup per seat of an unnest at ten rows a
--    hold: the locking statement runs with hash and merge joins off (inventory_lock_due_seats), which
--    leaves it the lookups;
--  * filtered seat_states on `state = 'held'` as if no seat were held, and scanned the table once per hold
--    of the batch (2.4 s for a batch of 200 on 20,000 seats): no statement filters seats on their state;
--    they are freed by the row addresses (ctid) the locking statement returned, rows this transaction
--    has locked and which cannot move, re-checked by that statement on their latest version.
-- The seats are found by both primary-key columns (unnest of the hold's seat ids, not `seat_id = ANY
-- (...)`, which an unanalyzed showtime turns into a scan of its seats: BENCHMARKS.md, item 1).

-- Up to p_batch dead active holds, oldest first, locked; those another sweeper, a purchase, a release or an
-- extension has locked are skipped (and re-checked under the lock: an extension that committed moved
-- expires_at past now()).
-- (plpgsql, not sql, for both helpers: plpgsql keeps its plans from call to call, a sql function with SET
-- plans its statement on every call: 0.3 ms of a 5 ms batch, measured.)
CREATE FUNCTION inventory_due_holds(p_batch integer)
RETURNS text[] LANGUAGE plpgsql SET enable_sort = off AS $$
BEGIN
    RETURN (SELECT array_agg(d.hold_id ORDER BY d.expires_at, d.hold_id)
              FROM (SELECT h.hold_id, h.expires_at FROM holds h
                     WHERE h.status = 'active' AND h.expires_at <= now()
                     ORDER BY h.expires_at
                     LIMIT p_batch
                       FOR UPDATE SKIP LOCKED) d);
END $$;

-- The seats that still point at these holds (an active hold's seats are held, never purchased), locked in the
-- claims' order, (showtime_id, seat_id), before any is changed: a rush claiming them never deadlocks with
-- the sweep, it waits for the batch's commit.
CREATE FUNCTION inventory_lock_due_seats(p_hold_ids text[])
RETURNS TABLE (tid tid, showtime_id text, seat_id text, hold_id text)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    RETURN QUERY
    SELECT s.ctid, s.showtime_id, s.seat_id, h.hold_id
      FROM holds h
     CROSS JOIN LATERAL unnest(h.seat_ids) u(seat_id)
      JOIN seat_states s ON s.showtime_id = h.showtime_id AND s.seat_id = u.seat_id AND s.hold_id = h.hold_id
     WHERE h.hold_id = ANY (p_hold_ids)
     ORDER BY s.showtime_id, s.seat_id
       FOR UPDATE OF s;
END $$;

CREATE OR REPLACE FUNCTION inventory_expire_holds(p_batch integer)
RETURNS TABLE (hold_id text, showtime_id text, seat_ids text[]) LANGUAGE plpgsql AS $$
DECLARE
    v_ids         text[] := inventory_due_holds(p_batch);
    v_tids        tid[];
    v_showtimes   text[];
    v_seats       text[];
    v_seat_holds  text[];
BEGIN
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(l.tid), array_agg(l.showtime_id), array_agg(l.seat_id), array_agg(l.hold_id)
      INTO v_tids, v_showtimes, v_seats, v_seat_holds
      FROM inventory_lock_due_seats(v_ids) l;

    RETURN QUERY
    WITH expired AS (
        UPDATE holds h SET status = 'expired', updated_at = now()
         WHERE h.hold_id = ANY (v_ids)
        RETURNING h AS hold
    ), freed AS (
        UPDATE seat_states s
           SET state = 'available', hold_id = NULL, hold_expires_at = NULL, updated_at = now()
         WHERE s.ctid = ANY (v_tids)
        RETURNING s.showtime_id, s.seat_id, s.version
    ), versions AS (
        SELECT k.hold_id, jsonb_object_agg(f.seat_id, f.version) AS seat_versions
          FROM freed f
          JOIN unnest(v_showtimes, v_seats, v_seat_holds) k(showtime_id, seat_id, hold_id)
            ON k.showtime_id = f.showtime_id AND k.seat_id = f.seat_id
         GROUP BY k.hold_id
    ), events AS (
        INSERT INTO outbox (event_id, hold_id, event_type, payload)
        SELECT x.event_id, (x.hold).hold_id, 'hold.expired',
               inventory_event_payload(x.event_id, 'hold.expired', x.hold, now(), x.seat_versions)
          FROM (SELECT gen_random_uuid() AS event_id, e.hold, coalesce(v.seat_versions, '{}'::jsonb) AS seat_versions
                  FROM expired e LEFT JOIN versions v ON v.hold_id = (e.hold).hold_id
                 ORDER BY (e.hold).expires_at, (e.hold).hold_id) x
        RETURNING 1
    )
    SELECT (e.hold).hold_id, (e.hold).showtime_id, (e.hold).seat_ids
      FROM expired e
     ORDER BY (e.hold).expires_at, (e.hold).hold_id;
END $$;
