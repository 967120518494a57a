-- What a restore must bring back identically: for every table of the portal, its row count and
-- a checksum of all its rows (raw GPU sample partitions: the count only, they are huge), then
-- every sequence's position (the next id handed out) -- the invoice number counter is a table
-- (billing_invoicecounter) and so is in the first part.
-- The checksum is the sum of every row's md5 as two 64-bit halves: a row changed, missing or
-- added changes it; it needs no sort and constant memory. (One md5 over all rows joined as one
-- string stops at PostgreSQL's 1 GB limit for a value: allocations_samplebatch alone gains about
-- 1.6 GB of row text a day at 60,000 GPUs.)
--   psql -X -A -t -d DBNAME -f deploy/backup/fingerprint.sql
-- Two databases are identical for the portal when the outputs are (restore-drill.sh diffs them).
SELECT format(
         'SELECT %L, count(*), %s FROM %I.%I AS t',
         c.relname,
         CASE WHEN c.relname LIKE 'allocations\_gpusample%' THEN quote_literal('-')
              ELSE 'coalesce(sum((''x'' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0) || '':'' || '
                   'coalesce(sum((''x'' || right(md5(t::text), 16))::bit(64)::bigint::numeric), 0)' END,
         n.nspname, c.relname)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
 ORDER BY c.relname
\gexec
SELECT 'sequence ' || sequencename, coalesce(last_value::text, 'unused')
  FROM pg_sequences
 WHERE schemaname = 'public'
 ORDER BY sequencename;
