-- Per-seat versions and events that name exactly the seats they changed (INTERFACE.md rule 8,
-- decision 0012).
--
-- A seat's version grows by one with each change of its state, its holder or its hold's expiry. The
-- expiry of a hold is such a change even though nothing is written at that instant: from
-- hold_expires_at on, a seat held by a dead hold is available (rule 3) at version + 1. The sweep (or a
-- release of the dead hold) that later frees the row writes that same version + 1, so the row catches
-- up with what availability already said; a new hold that takes the seat first writes version + 2 (the
-- expiry, then its claim). Each (seat, version) pair therefore names one state only, whoever reports
-- it: availability, an event, or the row.
--
-- Redefined here: inventory_free_seats (returns the seats it freed with their versions),
-- inventory_event_payload and inventory_emit (seatIds = the changed seats, seatVersions), inventory_release
-- and inventory_expire_holds (emit what was freed), inventory_availability (adds version). inventory_hold
-- and inventory_purchase are untouched: their inventory_emit(type, hold) reads the claimed or sold seats.

ALTER TABLE seat_states ADD COLUMN version bigint NOT NULL DEFAULT 0 CONSTRAINT seat_states_version_not_negative
    CHECK (version >= 0);

-- The version a seat shows now: one more than the row's while the row is held by a dead hold.
CREATE FUNCTION inventory_seat_version(p_state text, p_hold_expires_at timestamptz, p_version bigint)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT p_version + CASE WHEN p_state = 'held' AND p_hold_expires_at <= now() THEN 1 ELSE 0 END
$$;

-- Every change of a seat gets its version here, so no operation, present or future (hold.extended),
-- can forget it and nobody sets it by hand. From the version the seat shows now: freeing a dead hold's
-- seat changes nothing a reader could see (it was available already), every other change is one more.
CREATE FUNCTION seat_states_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS NOT DISTINCT FROM OLD.state AND NEW.hold_id IS NOT DISTINCT FROM OLD.hold_id
       AND NEW.hold_expires_at IS NOT DISTINCT FROM OLD.hold_expires_at THEN
        NEW.version := OLD.version;
    ELSIF OLD.state = 'held' AND OLD.hold_expires_at <= now() AND NEW.state = 'available' THEN
        NEW.version := OLD.version + 1;
    ELSE
        NEW.version := inventory_seat_version(OLD.state, OLD.hold_expires_at, OLD.version) + 1;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER seat_states_version BEFORE UPDATE ON seat_states
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.hold_id IS DISTINCT FROM NEW.hold_id
                       OR OLD.hold_expires_at IS DISTINCT FROM NEW.hold_expires_at OR OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION seat_states_version();

-- A new seat is available at version 0 (seats.define publishes no event: a consumer's empty map means
-- "available, version 0"), whatever an INSERT says.
CREATE FUNCTION seat_states_version_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := 0;
    RETURN NEW;
END $$;

CREATE TRIGGER seat_states_version_insert BEFORE INSERT ON seat_states
    FOR EACH ROW WHEN (NEW.version <> 0) EXECUTE FUNCTION seat_states_version_insert();

-- The exact event body of INTERFACE.md: seatIds are the seats the event changed, in the hold's order;
-- seatVersions gives each of them its new version ({"A1": 3, ...}; {} when it changed none).
DROP FUNCTION inventory_event_payload(uuid, text, holds, timestamptz);
CREATE FUNCTION inventory_event_payload(p_event_id uuid, p_type text, p_hold holds, p_occurred_at timestamptz,
                                        p_seat_versions jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'eventId', p_event_id::text,
               'type', p_type,
               'occurredAt', inventory_rfc3339(p_occurred_at),
               'showtimeId', p_hold.showtime_id,
               'holdId', p_hold.hold_id,
               'userId', p_hold.user_id,
               'seatIds', to_jsonb(ARRAY(SELECT u.seat_id FROM unnest(p_hold.seat_ids) WITH ORDINALITY u(seat_id, ord)
                                          WHERE p_seat_versions ? u.seat_id ORDER BY u.ord)),
               'seatVersions', p_seat_versions)
        || CASE p_type
               WHEN 'hold.created' THEN jsonb_build_object('expiresAt', inventory_rfc3339(p_hold.expires_at))
               WHEN 'hold.extended' THEN jsonb_build_object('expiresAt', inventory_rfc3339(p_hold.expires_at))
               WHEN 'seats.purchased' THEN jsonb_build_object('orderId', p_hold.order_id)
               ELSE '{}'::jsonb
           END
$$;

-- An event naming the seats it changed and their new versions.
CREATE FUNCTION inventory_emit(p_type text, p_hold holds, p_seat_versions jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_event_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO outbox (event_id, hold_id, event_type, payload)
    VALUES (v_event_id, p_hold.hold_id, p_type,
            inventory_event_payload(v_event_id, p_type, p_hold, now(), coalesce(p_seat_versions, '{}'::jsonb)));
END $$;

-- hold.created and seats.purchased (and hold.extended, to come) change every seat of the hold, and those
-- seats still point at it: their versions are read back. A hold.released or hold.expired must say which
-- seats it freed (inventory_free_seats answers that), so this form refuses them rather than guess.
CREATE OR REPLACE FUNCTION inventory_emit(p_type text, p_hold holds) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_type IN ('hold.released', 'hold.expired') THEN
        RAISE EXCEPTION 'inventory_emit(%): pass the freed seats, inventory_emit(type, hold, inventory_free_seats(hold))',
            p_type USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM inventory_emit(p_type, p_hold,
        (SELECT jsonb_object_agg(s.seat_id, s.version) FROM seat_states s
          WHERE s.showtime_id = p_hold.showtime_id AND s.seat_id = ANY (p_hold.seat_ids)
            AND s.hold_id = p_hold.hold_id));
END $$;

-- Frees the seats that still point at the hold (a newer hold may have taken a seat of a dead one), and
-- locks them first in (showtime_id, seat_id) order, the order every claim locks in, so a claim and a
-- release or sweep never deadlock. Returns the seats it freed with their new versions ({} for none).
DROP FUNCTION inventory_free_seats(holds);
CREATE FUNCTION inventory_free_seats(p_hold holds) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_freed jsonb;
BEGIN
    PERFORM 1 FROM seat_states s
     WHERE s.showtime_id = p_hold.showtime_id AND s.seat_id = ANY (p_hold.seat_ids) AND s.hold_id = p_hold.hold_id
     ORDER BY s.seat_id
       FOR UPDATE;
    WITH freed AS (
        UPDATE seat_states s
           SET state = 'available', hold_id = NULL, hold_expires_at = NULL, updated_at = now()
         WHERE s.showtime_id = p_hold.showtime_id AND s.seat_id = ANY (p_hold.seat_ids)
           AND s.hold_id = p_hold.hold_id AND s.state = 'held'
        RETURNING s.seat_id, s.version)
    SELECT coalesce(jsonb_object_agg(f.seat_id, f.version), '{}'::jsonb) INTO v_freed FROM freed f;
    RETURN v_freed;
END $$;

-- release: as in 0002, with the freed seats in the event.
CREATE OR REPLACE FUNCTION inventory_release(p_hold_id text, p_user_id text)
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
    PERFORM inventory_emit(CASE v_hold.status WHEN 'expired' THEN 'hold.expired' ELSE 'hold.released' END, v_hold,
                           inventory_free_seats(v_hold));
    RETURN inventory_result('ok', v_hold);
END $$;

-- The expiry sweep: as in 0002; each hold.expired names the seats it freed (fewer than the hold's, or
-- none, when a newer hold took some after expires_at; still published once, rule 3).
CREATE OR REPLACE FUNCTION inventory_expire_holds(p_batch integer)
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
        PERFORM inventory_emit('hold.expired', v_hold, inventory_free_seats(v_hold));
        hold_id := v_hold.hold_id;
        showtime_id := v_hold.showtime_id;
        seat_ids := v_hold.seat_ids;
        RETURN NEXT;
    END LOOP;
END $$;

-- availability: as in 0002, with each seat's version as it shows now.
DROP FUNCTION inventory_availability(text);
CREATE FUNCTION inventory_availability(p_showtime_id text)
RETURNS TABLE (seat_id text, state text, hold_expires_at_ms bigint, version bigint) LANGUAGE sql STABLE AS $$
    SELECT s.seat_id,
           CASE WHEN s.state = 'held' AND s.hold_expires_at <= now() THEN 'available' ELSE s.state END,
           CASE WHEN s.state = 'held' AND s.hold_expires_at > now() THEN inventory_epoch_ms(s.hold_expires_at) END,
           s.version + CASE WHEN s.state = 'held' AND s.hold_expires_at <= now() THEN 1 ELSE 0 END
      FROM seat_states s
     WHERE s.showtime_id = p_showtime_id
     ORDER BY s.position
$$;
