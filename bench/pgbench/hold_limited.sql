-- hold.sql's pipeline through the store's statement (inventory_hold_idempotent, migration 7) with the per-user
-- seat limit on or off, to measure what the limit costs a hold (decision 0015): the (user, showtime) advisory
-- lock and the count of the user's live seats. Users are drawn from 100,000, so each has the
-- handful of holds a real buyer has; :limit 0 runs the same statement without the limit (no lock, no count).
--   pgbench -h localhost -U postgres -n -M prepared -c 8 -j 2 -T 20 -D limit=10 -f bench/pgbench/hold_limited.sql DATABASE
--   pgbench ... -D limit=0 ...      (the same, limit off)
\set seat random(1, 199996)
\set n random(1, 4)
\set user random(1, 100000)
\startpipeline
BEGIN;
SELECT (r.result).outcome FROM inventory_hold_idempotent('bench_' || gen_random_uuid(), 'bench',
    ARRAY(SELECT 'S' || (:seat + g) FROM generate_series(0, :n - 1) g), 'user_' || :user, NULL, NULL, 300, false,
    NULLIF(:limit, 0), false) r;
COMMIT;
SELECT pg_notify('inventory_outbox', '') FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1) AS pending;
\endpipeline
