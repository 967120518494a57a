#!/usr/bin/env bash
# The restore drill (monthly; tests/deploy/test_backup_restore.py runs it): dump DBNAME, restore
# the dump into a new database DBNAME_drill, compare the two with fingerprint.sql, drop the copy.
#   deploy/backup/restore-drill.sh DBNAME [FOLDER-FOR-THE-DUMP]
# Prints "restore drill: OK" and exits 0, or prints the differing lines and exits 1. It never
# writes to DBNAME. Run it against the replica or at a quiet hour: the two fingerprints are
# read at different moments, so a portal writing meanwhile shows up as a difference.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DBNAME [FOLDER]" >&2; exit 2; }
export PATH="${PG_BINDIR:+$PG_BINDIR:}$PATH"
here=$(cd "$(dirname "$0")" && pwd)
db=$1
folder=${2:-$(mktemp -d)}
drill="${db}_drill"
dump="$folder/$db.dump"
cleanup() { dropdb --if-exists "$drill" >/dev/null 2>&1 || true; rm -f "$dump"; }
trap cleanup EXIT
dropdb --if-exists "$drill"
psql -X -A -t -v ON_ERROR_STOP=1 -d "$db" -f "$here/fingerprint.sql" >"$folder/before.txt"
"$here/portal-dump.sh" "$db" "$dump"
"$here/portal-restore.sh" "$dump" "$drill"
psql -X -A -t -v ON_ERROR_STOP=1 -d "$drill" -f "$here/fingerprint.sql" >"$folder/after.txt"
tables=$(grep -vc '^sequence ' "$folder/before.txt" || true)
if diff -u "$folder/before.txt" "$folder/after.txt"; then
  echo "restore drill: OK ($tables tables and every sequence identical)"
else
  echo "restore drill: the restored database differs (lines above)" >&2
  exit 1
fi
