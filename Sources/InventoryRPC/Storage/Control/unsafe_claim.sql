-- CONTROL BUILD ONLY (`-Xswiftc -DINVENTORY_CONTROL_UNSAFE_CLAIM`, see ControlUnsafeClaim.swift): the
-- store's hold statement without the claim's availability condition and without its locking step, to
-- show that the concurrency tests catch a double hold. Parameters as inventory_hold's:
-- $1 hold_id, $2 showtime_id, $3 seat_ids, $4 user_id, $5 idempotency_key, $6 request_hash, $7 ttl_seconds,
-- and inventory_hold_idempotent's $8 derived, $9 max seats per user, $10 count purchased (not used here: the
-- control keeps no idempotency records and no seat limit).
WITH h AS (
    INSERT INTO holds (hold_id, showtime_id, user_id, seat_ids, status, expires_at, idempotency_key, request_hash)
    VALUES ($1, $2, $4, $3::text[], 'active',
            inventory_ceil_second(now() + make_interval(secs => $7::integer)), $5, $6)
    RETURNING *
), claim AS (
    UPDATE seat_states s
       SET state = 'held', hold_id = $1, hold_expires_at = (SELECT h.expires_at FROM h), updated_at = now()
     WHERE s.showtime_id = $2 AND s.seat_id = ANY ($3::text[])
    RETURNING s.seat_id
)
SELECT (inventory_result('created', h)).* FROM h WHERE (SELECT count(*) FROM claim) >= 0 AND $8::boolean IS NOT NULL
  AND ($9::integer IS NULL OR $10::boolean IS NULL OR true)
