-- Idempotency as Stripe does it (INTERFACE.md rule 9, decision 0013): the first answer a caller's key got,
-- refusals included, is kept and answered again; a request without a key is keyed by the core from its
-- broker identity and message_id, and those derived keys keep successes only. Records are purged after
-- IDEMPOTENCY_RETENTION_HOURS by the expiry timer (inventory_purge_idempotency).
--
-- New holds no longer carry their key in holds.idempotency_key: a key lives here only, so that purging its
-- record really frees it. The keys of holds made before this migration are copied here (with their
-- created_at, so they are purged in their turn).

CREATE TABLE idempotency_keys (
    user_id         text        NOT NULL,
    idempotency_key text        NOT NULL,
    -- RequestHash.of(request): the same key with another request is IDEMPOTENCY_KEY_REUSED.
    request_hash    text        NOT NULL,
    -- Keyed by the core (broker user + message_id): kept for successes only.
    derived         boolean     NOT NULL DEFAULT false,
    -- A success: the hold, replayed as it now stands.
    hold_id         text        REFERENCES holds (hold_id),
    -- A refusal (unavailable, unknown_seats, showtime_not_found, ...): the function's answer, to_jsonb of an
    -- inventory_hold_result, replayed as it was.
    reply           jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- clock_timestamp() when the decision was made, just before the commit (the transaction's own time is
    -- now(), when it began): the fault checker's lower bound of the commit time ("committed after the
    -- caller's deadline").
    decided_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, idempotency_key),
    -- While the first request with a key is deciding, its row has neither (other requests with the key wait
    -- on it); it commits with exactly one.
    CONSTRAINT idempotency_keys_one_answer CHECK (hold_id IS NULL OR reply IS NULL),
    CONSTRAINT idempotency_keys_derived_success CHECK (NOT derived OR hold_id IS NOT NULL)
);

-- The purge's queue.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, derived, hold_id, created_at, decided_at)
SELECT h.user_id, h.idempotency_key, h.request_hash, false, h.hold_id, h.created_at, h.created_at
  FROM holds h
 WHERE h.idempotency_key IS NOT NULL;

-- The stored answer for a key: (replayed, the answer). Same request: the hold as it now stands (outcome
-- `replayed`) or the refusal as it was; another request: `key_reused` (not a replay).
CREATE FUNCTION inventory_idempotent_answer(p_user_id text, p_key text, p_request_hash text)
RETURNS TABLE (replayed boolean, result inventory_hold_result) LANGUAGE sql STABLE AS $$
    SELECT k.request_hash = p_request_hash,
           CASE WHEN k.request_hash <> p_request_hash THEN inventory_outcome('key_reused')
                WHEN k.hold_id IS NOT NULL THEN inventory_result('replayed', h)
                ELSE jsonb_populate_record(NULL::inventory_hold_result, k.reply)
           END
      FROM idempotency_keys k
      LEFT JOIN holds h ON h.hold_id = k.hold_id
     WHERE k.user_id = p_user_id AND k.idempotency_key = p_key
$$;

-- hold with idempotency: wraps inventory_hold (which no longer sees the key).
--  * A caller's key (p_derived false) is claimed first, by inserting its row: a concurrent request with the
--    same key waits on that row in the database (bounded by the transaction's lock_timeout, set from the
--    request's deadline), never on a worker thread, and then answers what the first one stored. Whatever
--    inventory_hold decides is stored in the same transaction: the hold, or the refusal.
--  * A derived key (p_derived true) writes only with a success, so a rush of refusals writes nothing. A
--    redelivery whose first delivery committed finds that record (looked up first, and again after a
--    refusal: a first delivery still deciding holds the seats' locks, so the redelivery waited for it and
--    then finds its record).
--  * No key: inventory_hold alone.
-- Transient failures are errors, which roll everything back: they are never stored.
-- Parameters in inventory_hold's order (the control build's statement takes the same ones), then p_derived.
CREATE FUNCTION inventory_hold_idempotent(p_hold_id text, p_showtime_id text, p_seat_ids text[], p_user_id text,
                                          p_key text, p_request_hash text, p_ttl_seconds integer, p_derived boolean)
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
        -- A message_id reused for another request is not a redelivery: that record is ignored.
        RETURN QUERY SELECT * FROM inventory_idempotent_answer(p_user_id, p_key, p_request_hash) a WHERE a.replayed;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    v_result := inventory_hold(p_hold_id, p_showtime_id, p_seat_ids, p_user_id, NULL, NULL, p_ttl_seconds);

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
            -- Another delivery of this message committed a hold meanwhile (its seats must have been freed in
            -- between): this one must not commit a second. Retried by the store, it then replays.
            RAISE EXCEPTION 'hold %: message key % decided meanwhile', p_hold_id, p_key
                USING ERRCODE = 'serialization_failure';
        END IF;
    ELSIF p_key IS NOT NULL AND v_result.outcome = 'unavailable' THEN
        RETURN QUERY SELECT * FROM inventory_idempotent_answer(p_user_id, p_key, p_request_hash) a WHERE a.replayed;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY SELECT false, v_result;
END $$;

-- The last statement before COMMIT of a request with a deadline (epoch milliseconds, the caller's clock;
-- every process here reads the same host clock): past it, the transaction must not commit, since the caller
-- has been told it timed out. statement_timeout and lock_timeout (set from the same deadline) stop the
-- waits; this catches the last instants. SQLSTATE 57014 (query_canceled), as a statement timeout.
CREATE FUNCTION inventory_deadline_check(p_deadline_ms bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_deadline_ms IS NOT NULL AND inventory_epoch_ms(clock_timestamp()) >= p_deadline_ms THEN
        RAISE EXCEPTION 'the request''s deadline (%) passed before its commit', p_deadline_ms
            USING ERRCODE = 'query_canceled';
    END IF;
END $$;

-- Deletes up to p_batch records older than p_retention_hours, oldest first; returns how many. Short
-- transactions (the expiry timer calls it until a batch comes back short); rows being written are skipped.
CREATE FUNCTION inventory_purge_idempotency(p_retention_hours integer, p_batch integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_deleted integer;
BEGIN
    DELETE FROM idempotency_keys k
     USING (SELECT d.user_id, d.idempotency_key
              FROM idempotency_keys d
             WHERE d.created_at < now() - make_interval(hours => p_retention_hours)
             ORDER BY d.created_at
             LIMIT p_batch
               FOR UPDATE SKIP LOCKED) due
     WHERE k.user_id = due.user_id AND k.idempotency_key = due.idempotency_key;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END $$;
