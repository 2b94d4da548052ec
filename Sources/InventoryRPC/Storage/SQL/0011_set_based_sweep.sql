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
-- Plans that do not depend on fresh statistics (the launch-night case: a showtime analyzed when all its seats
-- were available, then held by a rush and expiring before autovacuum analyzes again). No statement filters
-- seat_states on its state: an estimate of "no seat is held" made the planner scan every seat of the table
-- once per hold of the batch (2.4 s for a batch of 200 on 20,000 seats, measured). The seats are found by
-- both primary-key columns (unnest of the hold's seat ids, not `seat_id = ANY (...)`, BENCHMARKS.md item 1),
-- and freed by the row addresses (ctid) the locking statement returned: rows this transaction has locked
-- cannot move, and the locking statement re-checked each one (s.hold_id = h.hold_id) on its latest version.
CREATE OR REPLACE FUNCTION inventory_expire_holds(p_batch integer)
RETURNS TABLE (hold_id text, showtime_id text, seat_ids text[]) LANGUAGE plpgsql AS $$
DECLARE
    v_ids        text[];
    v_seat_tids  tid[];
    v_seat_holds text[];
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

    -- The seats that still point at them (an active hold's seats are held, never purchased), locked in the
    -- claims' order before any is changed.
    SELECT array_agg(l.tid), array_agg(l.hold_id) INTO v_seat_tids, v_seat_holds
      FROM (SELECT s.ctid AS tid, h.hold_id
              FROM holds h
             CROSS JOIN LATERAL unnest(h.seat_ids) u(seat_id)
              JOIN seat_states s ON s.showtime_id = h.showtime_id AND s.seat_id = u.seat_id AND s.hold_id = h.hold_id
             WHERE h.hold_id = ANY (v_ids)
             ORDER BY s.showtime_id, s.seat_id
               FOR UPDATE OF s) l;

    RETURN QUERY
    WITH expired AS (
        UPDATE holds h SET status = 'expired', updated_at = now()
         WHERE h.hold_id = ANY (v_ids)
        RETURNING h AS hold
    ), freed AS (
        UPDATE seat_states s
           SET state = 'available', hold_id = NULL, hold_expires_at = NULL, updated_at = now()
          FROM unnest(v_seat_tids, v_seat_holds) k(tid, hold_id)
         WHERE s.ctid = k.tid AND s.hold_id = k.hold_id
        RETURNING k.hold_id, s.seat_id, s.version
    ), versions AS (
        SELECT f.hold_id, jsonb_object_agg(f.seat_id, f.version) AS seat_versions FROM freed f GROUP BY f.hold_id
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
