-- The minimal durable hold (issue 16 item 2, ../shared/MEASURED.md): insert the hold, take one seat if it
-- is available (a conditional update), insert an outbox row, commit. Against the schema of
-- minimal_setup.sh. What any design of a durable hold must at least pay on this machine (one
-- transaction, one commit and fsync): the ceiling that bench/ceilings.sh divides the service's rates by.
-- Sent as one pipeline (one round trip), as hold.sql and the core send a hold, so the two pgbench rates
-- differ by the database's work only. A random 63-bit hold id per transaction (a collision would abort
-- the run, not skew it).
--   pgbench -h localhost -U postgres -n -M prepared -c 8 -j 2 -T 10 -f bench/pgbench/minimal_hold.sql DATABASE
\set seat random(1, 200000)
\set hold random(1, 9223372036854775806)
\startpipeline
BEGIN;
INSERT INTO holds VALUES ('h' || :hold, 'bench', 'u', ARRAY['S' || :seat], now() + interval '300 s', 'active');
UPDATE seats SET state = 'held', hold_id = 'h' || :hold
 WHERE showtime = 'bench' AND seat = 'S' || :seat AND state = 'available';
INSERT INTO outbox (payload) VALUES ('{"type":"hold.created"}');
COMMIT;
\endpipeline
