#!/usr/bin/env bash
# Creates a scratch database for the hold benchmark: the schema (the migrations,
# Sources/InventoryRPC/Storage/SQL/NNNN_*.sql, applied in order, each in one transaction, as the migrator
# does; no schema_migrations table), one showtime `bench` with $SEATS seats,
# then ANALYZE (after seeding: plans made on empty tables stay with prepared statements).
#
#   PGPASSWORD=postgres bench/pgbench/setup.sh inv_bench            # creates the database inv_bench
#   pgbench -h localhost -U postgres -n -M prepared -c 4 -j 2 -T 10 -f bench/pgbench/hold.sql inv_bench
#   dropdb -h localhost -U postgres inv_bench
set -euo pipefail
db="${1:?usage: setup.sh DATABASE}"
seats="${SEATS:-200000}"
here="$(cd "$(dirname "$0")" && pwd)"
sql="$here/../../Sources/InventoryRPC/Storage/SQL"
psql=(psql -h "${PGHOST:-localhost}" -U "${PGUSER:-postgres}" -v ON_ERROR_STOP=1 -q)

createdb -h "${PGHOST:-localhost}" -U "${PGUSER:-postgres}" "$db"
# The glob sorts by name, so by version (the file names start with the zero-padded version).
for file in "$sql"/[0-9][0-9][0-9][0-9]_*.sql; do
    "${psql[@]}" -d "$db" -1 -f "$file"
done
"${psql[@]}" -d "$db" -c "SELECT * FROM inventory_define_seats('bench', ARRAY(SELECT 'S' || g FROM generate_series(1, $seats) g))"
"${psql[@]}" -d "$db" -c "ANALYZE"
echo "database $db ready: showtime 'bench' with $seats seats"
