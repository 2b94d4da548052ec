-- One hold per transaction through the same function the store calls (one round trip): 1 to 4 adjacent
-- seats at a random place of showtime `bench`, a fresh hold id each time, no idempotency key. As seats
-- fill up, more answers are `unavailable` (cheaper: nothing is written).
\set seat random(1, 199996)
\set n random(1, 4)
SELECT outcome FROM inventory_hold('bench_' || gen_random_uuid(), 'bench',
    ARRAY(SELECT 'S' || (:seat + g) FROM generate_series(0, :n - 1) g), 'user_' || :client_id, NULL, NULL, 300);
