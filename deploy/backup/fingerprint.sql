-- What a restore must bring back identically: for every table of the portal, its row count and
-- a checksum of all its rows (raw GPU sample partitions: the count only, they are huge), then
-- every sequence's position (the next id handed out) -- the invoice number counter is a table
-- (billing_invoicecounter) and so is in the first part.
--   psql -X -A -t -d DBNAME -f deploy/backup/fingerprint.sql
-- Two databases are identical for the portal when the outputs are (restore-drill.sh diffs them).
SELECT format(
         'SELECT %L, count(*), %s FROM %I.%I AS t',
         c.relname,
         CASE WHEN c.relname LIKE 'allocations\_gpusample%' THEN quote_literal('-')
              ELSE 'md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), ''''))' END,
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
