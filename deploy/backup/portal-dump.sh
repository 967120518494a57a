#!/usr/bin/env bash
# A logical dump of the portal's database (pg_dump's custom format), checked by listing it.
#   deploy/backup/portal-dump.sh DBNAME FILE
# Connection from libpq's environment: PGHOST, PGPORT, PGUSER, PGPASSFILE (docs/deployment.md,
# "Backups"). PG_BINDIR picks the client version (e.g. /usr/lib/postgresql/15/bin).
# The dump holds every table with its sequences' positions and the invoice number counter
# (billing_invoicecounter), so a restored portal numbers on from where it stopped.
# Raw GPU samples are most of the volume at scale: DUMP_WITHOUT_SAMPLES=1 leaves their rows out
# (usage hours, the billing basis, are kept; raw samples are kept 30 days anyway).
set -euo pipefail
# The dump holds password hashes, MFA secrets and personal data: readable by its owner only,
# whatever the backup host's umask (tests/deploy/test_findings.py).
umask 077
[ $# -eq 2 ] || { echo "usage: $0 DBNAME FILE" >&2; exit 2; }
export PATH="${PG_BINDIR:+$PG_BINDIR:}$PATH"
db=$1
out=$2
extra=()
if [ "${DUMP_WITHOUT_SAMPLES:-0}" = 1 ]; then
  extra+=(--exclude-table-data='allocations_gpusample*')
fi
tmp="$out.partial"
pg_dump --format=custom --compress=6 --file="$tmp" "${extra[@]}" "$db"
pg_restore --list "$tmp" >/dev/null   # a truncated or corrupt file fails here, not on restore day
mv "$tmp" "$out"
echo "dumped $db to $out ($(du -h "$out" | cut -f1))"
