-- Tables, constraints and guards. Functions come in the next migration.

CREATE TABLE holds (
    hold_id         text        PRIMARY KEY,
    showtime_id     text        NOT NULL,
    user_id         text        NOT NULL,
    seat_ids        text[]      NOT NULL CHECK (cardinality(seat_ids) >= 1),
    status          text        NOT NULL DEFAULT 'active'
                                CHECK (status IN ('active', 'released', 'expired', 'purchased')),
    expires_at      timestamptz NOT NULL,
    order_id        text,
    idempotency_key text,
    request_hash    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT holds_purchased_has_order CHECK (status <> 'purchased' OR order_id IS NOT NULL),
    CONSTRAINT holds_key_has_hash CHECK ((idempotency_key IS NULL) = (request_hash IS NULL)),
    -- The target of seat_states' composite foreign key: a seat can only point at a hold of its showtime.
    CONSTRAINT holds_hold_showtime UNIQUE (hold_id, showtime_id)
);

-- Idempotency keys are scoped to their user; the unique index is also what makes a concurrent duplicate wait.
CREATE UNIQUE INDEX holds_user_idempotency_key ON holds (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The expiry sweep's queue.
CREATE INDEX holds_active_expires_at ON holds (expires_at) WHERE status = 'active';

CREATE TABLE seat_states (
    showtime_id     text        NOT NULL,
    seat_id         text        NOT NULL,
    position        integer     NOT NULL CHECK (position >= 1),
    state           text        NOT NULL DEFAULT 'available'
                                CHECK (state IN ('available', 'held', 'purchased')),
    hold_id         text,
    hold_expires_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (showtime_id, seat_id),
    CONSTRAINT seat_states_position UNIQUE (showtime_id, position),
    -- The seat's holder is recorded on the seat: one seat row, one holder, never two.
    CONSTRAINT seat_states_holder CHECK ((state = 'available') = (hold_id IS NULL)),
    CONSTRAINT seat_states_held_expires CHECK ((state = 'held') = (hold_expires_at IS NOT NULL)),
    CONSTRAINT seat_states_hold_fk FOREIGN KEY (hold_id, showtime_id) REFERENCES holds (hold_id, showtime_id)
);

-- Guards that hold even for a buggy caller writing SQL by hand:
--  * a purchased seat never changes again (no double sale, no silent un-sale);
--  * a seat held by a live hold is never handed to another hold (no double hold): the only ways out of
--    a live hold are its release or expiry (back to available) or its purchase (same holder);
--  * a seat becomes purchased only from being held by that very hold;
--  * a seat that is held or purchased is never deleted.
-- "Live" is judged by now(), the transaction's clock, the same clock the claim uses.
CREATE FUNCTION seat_states_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'seat % of showtime % is %: it cannot be deleted', OLD.seat_id, OLD.showtime_id, OLD.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'seat_states_not_deleted_while_taken';
    END IF;
    IF OLD.state = 'purchased' THEN
        RAISE EXCEPTION 'seat % of showtime % is purchased: it never changes again', OLD.seat_id, OLD.showtime_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'seat_states_purchased_is_final';
    END IF;
    IF NEW.state = 'purchased' AND (OLD.state <> 'held' OR NEW.hold_id IS DISTINCT FROM OLD.hold_id) THEN
        RAISE EXCEPTION 'seat % of showtime % can only be purchased by the hold that holds it', OLD.seat_id,
            OLD.showtime_id USING ERRCODE = 'check_violation', CONSTRAINT = 'seat_states_purchased_by_holder';
    END IF;
    IF OLD.state = 'held' AND NEW.state = 'held' AND NEW.hold_id IS DISTINCT FROM OLD.hold_id
       AND OLD.hold_expires_at > now() THEN
        RAISE EXCEPTION 'seat % of showtime % is held by live hold % until %', OLD.seat_id, OLD.showtime_id,
            OLD.hold_id, OLD.hold_expires_at USING ERRCODE = 'check_violation', CONSTRAINT = 'seat_states_live_hold';
    END IF;
    RETURN NEW;
END $$;

-- The WHEN clauses keep the trigger off the hot path of a claim (available -> held).
CREATE TRIGGER seat_states_guard_update BEFORE UPDATE ON seat_states
    FOR EACH ROW WHEN (OLD.state <> 'available' OR NEW.state = 'purchased') EXECUTE FUNCTION seat_states_guard();
CREATE TRIGGER seat_states_guard_delete BEFORE DELETE ON seat_states
    FOR EACH ROW WHEN (OLD.state <> 'available') EXECUTE FUNCTION seat_states_guard();

-- A hold leaves `active` once and for all: released, expired and purchased holds never change.
CREATE FUNCTION holds_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hold % is %: it never changes again', OLD.hold_id, OLD.status
        USING ERRCODE = 'check_violation', CONSTRAINT = 'holds_final_status';
END $$;

CREATE TRIGGER holds_guard BEFORE UPDATE ON holds
    FOR EACH ROW WHEN (OLD.status <> 'active') EXECUTE FUNCTION holds_guard();

CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    hold_id      text        NOT NULL REFERENCES holds (hold_id),
    event_type   text        NOT NULL
                             CHECK (event_type IN ('hold.created', 'hold.released', 'hold.expired', 'seats.purchased')),
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    CONSTRAINT outbox_payload_event_id CHECK (payload ->> 'eventId' = event_id::text)
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Wakes the relay (LISTEN inventory_outbox) when rows commit; one notification per transaction at most.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inventory_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
