-- A fast read path for availability (issue 16 item 4, decision 0023).
--
-- The core keeps each showtime's seat rows (and the reply it encoded from them) together with the database
-- snapshot they were read in (pg_current_snapshot()). To answer again it asks one question: which seats did
-- transactions change that this snapshot does not see but the database now does? Every write of
-- seat_states, whoever makes it (a hold, a batch of holds, the sweep, a release, a purchase, an extension,
-- seats.define, SQL typed by hand), leaves one row here per statement and showtime, written by the
-- statement triggers below in the writer's own transaction (rolled back with it, a savepoint included), with
-- the writer's top-level transaction id. Nothing is updated in place: a rush of holds on one showtime
-- appends rows side by side and never waits for another hold's lock, as it would on a per-showtime counter.
--
-- The question is exact, not a guess by time or sequence: a row whose transaction id is visible to the
-- cached snapshot was seen by it; one committed later is visible to the question's snapshot and not to the
-- cached one, whatever order transactions started or committed in (a sequence number would be handed out
-- before commit and could commit behind a later one). Ids below the cached snapshot's xmin had all ended
-- when it was taken, so only rows from that xmin on need looking at: an index range of
-- (showtime_id, xid).
--
-- Expiry needs no row: the core keeps each held seat's hold_expires_at and shows it available (version + 1)
-- from that instant by the database clock the question returns, as inventory_availability does (rule 3).

CREATE TABLE availability_changes (
    showtime_id text    NOT NULL,
    xid         xid8    NOT NULL DEFAULT pg_current_xact_id(),
    -- The seats the statement wrote (an UPDATE's rows); re-read by primary key.
    seat_ids    text[]  NOT NULL,
    -- Seats were added or removed: positions moved, a cached seat map is read again whole.
    reshaped    boolean NOT NULL
);

CREATE INDEX availability_changes_showtime_xid ON availability_changes (showtime_id, xid);

-- Rows below pruned_below may be gone (inventory_availability_prune): a snapshot older than that is read again
-- whole. next_below is what the next prune will delete below, so a row lives at least one prune interval.
CREATE TABLE availability_horizon (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_below xid8    NOT NULL,
    next_below   xid8    NOT NULL
);

-- Nothing pruned yet. A transaction that wrote seat_states before these triggers existed had ended before this
-- migration committed (CREATE TRIGGER waits for every writer of the table), so before any snapshot a cache
-- keeps: no snapshot misses an unrecorded write.
INSERT INTO availability_horizon (pruned_below, next_below) VALUES ('0', '0');

-- One function for the three triggers: each names its transition table changed_rows.
CREATE FUNCTION availability_changes_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO availability_changes (showtime_id, seat_ids, reshaped)
    SELECT c.showtime_id, array_agg(c.seat_id), TG_OP <> 'UPDATE' FROM changed_rows c GROUP BY c.showtime_id;
    RETURN NULL;
END $$;

-- (PostgreSQL allows a transition table only on a trigger of one event.)
CREATE TRIGGER availability_changes_update AFTER UPDATE ON seat_states
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION availability_changes_record();
CREATE TRIGGER availability_changes_insert AFTER INSERT ON seat_states
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION availability_changes_record();
CREATE TRIGGER availability_changes_delete AFTER DELETE ON seat_states
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION availability_changes_record();

CREATE FUNCTION inventory_epoch_us(p_ts timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT (extract(epoch FROM p_ts) * 1000000)::bigint
$$;

-- The seats of a showtime as their rows say (the caller shows a seat of a dead hold as available at
-- version + 1, as inventory_availability does), read in one snapshot with that snapshot itself and its
-- clock. The first row is the header (seat_id NULL): the snapshot, now() in epoch microseconds, and whether
-- the seats that follow are all of them (`whole`: p_since is NULL, older than the pruning horizon, or seats
-- were added or removed since) or only those changed since p_since (none: nothing changed). Whole and no
-- seats: the showtime has no seat map.
--
-- STABLE: every statement here reads the calling statement's snapshot, the one pg_current_snapshot() returns.
CREATE FUNCTION inventory_availability_since(p_showtime_id text, p_since text)
RETURNS TABLE (snapshot text, now_us bigint, whole boolean, seat_id text, state text, hold_expires_at_us bigint,
               version bigint, section text, seat_row text, number integer, category text, rank integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_since    pg_snapshot := p_since::pg_snapshot;
    v_whole    boolean;
    v_reshaped boolean;
    v_seats    text[];
BEGIN
    v_whole := v_since IS NULL
        OR pg_snapshot_xmin(v_since) < (SELECT h.pruned_below FROM availability_horizon h);
    IF NOT v_whole THEN
        SELECT coalesce(bool_or(c.reshaped), false), array_agg(DISTINCT u.seat_id) INTO v_reshaped, v_seats
          FROM availability_changes c
         CROSS JOIN LATERAL unnest(c.seat_ids) u(seat_id)
         WHERE c.showtime_id = p_showtime_id
           AND c.xid >= pg_snapshot_xmin(v_since)
           AND NOT pg_visible_in_snapshot(c.xid, v_since);
        v_whole := v_reshaped;
    END IF;

    RETURN QUERY SELECT pg_current_snapshot()::text, inventory_epoch_us(now()), v_whole, NULL::text, NULL::text,
                        NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::integer, NULL::text, NULL::integer;
    IF v_whole THEN
        RETURN QUERY
        SELECT NULL::text, NULL::bigint, NULL::boolean, s.seat_id, s.state, inventory_epoch_us(s.hold_expires_at),
               s.version, s.section, s.seat_row, s.number, s.category, s.rank
          FROM seat_states s
         WHERE s.showtime_id = p_showtime_id
         ORDER BY s.position;
    ELSIF v_seats IS NOT NULL THEN
        -- By both primary-key columns (unnest, not `= ANY`: BENCHMARKS.md, item 1).
        RETURN QUERY
        SELECT NULL::text, NULL::bigint, NULL::boolean, s.seat_id, s.state, inventory_epoch_us(s.hold_expires_at),
               s.version, s.section, s.seat_row, s.number, s.category, s.rank
          FROM unnest(v_seats) u(seat_id)
          JOIN seat_states s ON s.showtime_id = p_showtime_id AND s.seat_id = u.seat_id;
    END IF;
END $$;

-- Deletes the change rows below the horizon the previous prune recorded and records a new one (the oldest
-- transaction running now): a row lives one to two prune intervals. One pruner at a time (the others skip);
-- returns how many rows it deleted. The cores' expiry sweeps call it.
CREATE FUNCTION inventory_availability_prune() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_below   xid8;
    v_deleted integer;
BEGIN
    SELECT h.next_below INTO v_below FROM availability_horizon h FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE availability_horizon SET pruned_below = v_below, next_below = pg_snapshot_xmin(pg_current_snapshot());
    DELETE FROM availability_changes c WHERE c.xid < v_below;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END $$;
