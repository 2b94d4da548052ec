-- One hold exactly as InventoryStore sends it: one round trip (a pipeline) holding the operation's
-- transaction and then the relay's wake-up in a transaction of its own (decision 0002). 1 to 4 adjacent
-- seats at a random place of showtime `bench`, a fresh hold id each time, no idempotency key. As seats fill
-- up, more answers are `unavailable` (cheaper: nothing is written). Pipelines need -M extended or prepared:
--   pgbench -h localhost -U postgres -n -M prepared -c 4 -j 2 -T 10 -f bench/pgbench/hold.sql DATABASE
\set seat random(1, 199996)
\set n random(1, 4)
\startpipeline
BEGIN;
SELECT outcome FROM inventory_hold('bench_' || gen_random_uuid(), 'bench',
    ARRAY(SELECT 'S' || (:seat + g) FROM generate_series(0, :n - 1) g), 'user_' || :client_id, NULL, NULL, 300);
COMMIT;
SELECT pg_notify('inventory_outbox', '') FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1) AS pending;
\endpipeline
