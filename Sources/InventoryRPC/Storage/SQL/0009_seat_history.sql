-- Seat history (issue 15 item 4, decision 0019): every change of a seat, written in the same transaction as
-- the change, so the history holds exactly what committed, and only that.
--
-- Two writers, both triggers, so no operation (present or future) can forget it:
--  * every outbox row (an event) adds one entry per seat it names, with the version it gives that seat: the
--    history is the events, seat by seat;
--  * a claim that takes a seat from a dead hold adds the expiry that happened at that hold's expiresAt (the
--    change availability already showed, version + 1; its hold.expired, written later, names the seat no
--    more). So the history has every version of the seat, each once.
-- An expiry takes effect at the hold's expiresAt, which is the time recorded for it (the sweep's event may
-- come later). Entries older than HISTORY_RETENTION_DAYS are purged by the expiry timer in small batches.

CREATE TABLE seat_history (
    id          bigserial   PRIMARY KEY,
    showtime_id text        NOT NULL,
    seat_id     text        NOT NULL,
    version     bigint      NOT NULL,
    event_type  text        NOT NULL
                            CHECK (event_type IN ('hold.created', 'hold.extended', 'hold.released', 'hold.expired',
                                                  'seats.purchased')),
    state       text        NOT NULL CHECK (state IN ('available', 'held', 'purchased')),
    occurred_at timestamptz NOT NULL,
    hold_id     text        NOT NULL,
    user_id     text        NOT NULL,
    order_id    text,
    expires_at  timestamptz,
    -- The event that reported the change (NULL for an expiry a newer hold overtook: no event names it).
    event_id    uuid
);

-- A page of one seat, newest first; each version once.
CREATE UNIQUE INDEX seat_history_seat_version ON seat_history (showtime_id, seat_id, version);
-- The retention purge's queue.
CREATE INDEX seat_history_occurred_at ON seat_history (occurred_at);

CREATE FUNCTION seat_history_from_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_hold holds;
BEGIN
    IF NEW.payload -> 'seatVersions' = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_hold FROM holds h WHERE h.hold_id = NEW.hold_id;
    INSERT INTO seat_history (showtime_id, seat_id, version, event_type, state, occurred_at, hold_id, user_id,
                              order_id, expires_at, event_id)
    SELECT v_hold.showtime_id, v.key, v.value::bigint, NEW.event_type,
           CASE NEW.event_type WHEN 'hold.created' THEN 'held' WHEN 'hold.extended' THEN 'held'
                               WHEN 'seats.purchased' THEN 'purchased' ELSE 'available' END,
           CASE WHEN NEW.event_type = 'hold.expired' THEN least(v_hold.expires_at, NEW.created_at)
                ELSE NEW.created_at END,
           v_hold.hold_id, v_hold.user_id,
           CASE WHEN NEW.event_type = 'seats.purchased' THEN v_hold.order_id END,
           CASE WHEN NEW.event_type IN ('hold.created', 'hold.extended') THEN v_hold.expires_at END,
           NEW.event_id
      FROM jsonb_each_text(NEW.payload -> 'seatVersions') v
    ON CONFLICT (showtime_id, seat_id, version) DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER seat_history_from_event AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION seat_history_from_event();

-- A claim of a seat whose hold is dead (held -> held by another hold): the expiry came first, at its time.
CREATE FUNCTION seat_history_overtaken_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seat_history (showtime_id, seat_id, version, event_type, state, occurred_at, hold_id, user_id)
    SELECT OLD.showtime_id, OLD.seat_id, OLD.version + 1, 'hold.expired', 'available', OLD.hold_expires_at,
           h.hold_id, h.user_id
      FROM holds h WHERE h.hold_id = OLD.hold_id
    ON CONFLICT (showtime_id, seat_id, version) DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER seat_history_overtaken_expiry AFTER UPDATE ON seat_states
    FOR EACH ROW WHEN (OLD.state = 'held' AND NEW.state = 'held' AND OLD.hold_id IS DISTINCT FROM NEW.hold_id)
    EXECUTE FUNCTION seat_history_overtaken_expiry();

-- A page: entries of the seat with versions below p_before (all when NULL), newest first.
CREATE FUNCTION inventory_seat_history(p_showtime_id text, p_seat_id text, p_before bigint, p_limit integer)
RETURNS TABLE (version bigint, event_type text, state text, occurred_at_ms bigint, hold_id text, user_id text,
               order_id text, expires_at_ms bigint) LANGUAGE sql STABLE AS $$
    SELECT e.version, e.event_type, e.state, inventory_epoch_ms(e.occurred_at), e.hold_id, e.user_id, e.order_id,
           inventory_epoch_ms(e.expires_at)
      FROM seat_history e
     WHERE e.showtime_id = p_showtime_id AND e.seat_id = p_seat_id AND (p_before IS NULL OR e.version < p_before)
     ORDER BY e.version DESC
     LIMIT p_limit
$$;

-- Deletes up to p_batch entries older than p_retention_days, oldest first; returns how many (short
-- transactions: the expiry timer calls it until a batch comes back short).
CREATE FUNCTION inventory_purge_seat_history(p_retention_days integer, p_batch integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_deleted integer;
BEGIN
    DELETE FROM seat_history e
     USING (SELECT d.id FROM seat_history d
             WHERE d.occurred_at < now() - make_interval(days => p_retention_days)
             ORDER BY d.occurred_at
             LIMIT p_batch
               FOR UPDATE SKIP LOCKED) due
     WHERE e.id = due.id;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END $$;
