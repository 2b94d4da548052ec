-- A transaction that ran NOTIFY holds a cluster-wide lock from pre-commit until its commit record
-- is flushed, so every writing operation committed one at a time (no group commit): pgbench
-- measured 165-195 holds/s with this trigger, 637 with the NOTIFY sent as its own transaction
-- right after the commit. InventoryStore now does that in the same round trip (decision 0002).
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
