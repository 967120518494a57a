#!/usr/bin/env bash
# Restore a dump made by portal-dump.sh into a NEW database (it refuses an existing one):
#   deploy/backup/portal-restore.sh FILE DBNAME
# Run it as the role that should own the portal's tables (objects are created owned by it).
# All or nothing: one transaction, stop at the first error. Then point DATABASE_URL at DBNAME
# (or rename it: ALTER DATABASE ... RENAME TO ...) and start the services.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 FILE DBNAME" >&2; exit 2; }
export PATH="${PG_BINDIR:+$PG_BINDIR:}$PATH"
file=$1
db=$2
if [ "$(psql -X -A -t -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '${db//\'/}'")" = 1 ]; then
  echo "database $db exists; restore into a new one" >&2
  exit 1
fi
createdb --template=template0 --encoding=UTF8 "$db"
pg_restore --exit-on-error --single-transaction --no-owner --no-privileges --dbname="$db" "$file"
psql -X -q -d "$db" -c "ANALYZE" >/dev/null   # fresh planner statistics: a dump carries none
echo "restored $file into $db"
