#!/usr/bin/env bash
# Creates a scratch database for the minimal durable hold (bench/pgbench/minimal_hold.sql): the honest
# ceiling of a hold on this machine (issue 16 item 2). Three tables and nothing else: seats keyed by
# showtime and seat, holds, an outbox with a bigserial id; no functions, triggers, versions, history or
# JSON built in SQL. One showtime `bench` with $SEATS seats, then ANALYZE.
#
#   PGPASSWORD=postgres bench/pgbench/minimal_setup.sh inv_minimal      # creates the database inv_minimal
#   pgbench -h localhost -U postgres -n -M prepared -c 8 -j 2 -T 10 -f bench/pgbench/minimal_hold.sql inv_minimal
#   dropdb -h localhost -U postgres inv_minimal
set -euo pipefail
db="${1:?usage: minimal_setup.sh DATABASE}"
seats="${SEATS:-200000}"
psql=(psql -h "${PGHOST:-localhost}" -U "${PGUSER:-postgres}" -v ON_ERROR_STOP=1 -q)

createdb -h "${PGHOST:-localhost}" -U "${PGUSER:-postgres}" "$db"
"${psql[@]}" -d "$db" -1 <<SQL
CREATE TABLE seats (
    showtime text NOT NULL,
    seat     text NOT NULL,
    state    text NOT NULL DEFAULT 'available',
    hold_id  text,
    PRIMARY KEY (showtime, seat)
);
CREATE TABLE holds (
    hold_id    text        PRIMARY KEY,
    showtime   text        NOT NULL,
    user_id    text        NOT NULL,
    seat_ids   text[]      NOT NULL,
    expires_at timestamptz NOT NULL,
    status     text        NOT NULL
);
CREATE TABLE outbox (
    id      bigserial PRIMARY KEY,
    payload jsonb     NOT NULL
);
INSERT INTO seats (showtime, seat) SELECT 'bench', 'S' || g FROM generate_series(1, $seats) g;
SQL
"${psql[@]}" -d "$db" -c "ANALYZE"
echo "database $db ready: minimal schema, showtime 'bench' with $seats seats"
