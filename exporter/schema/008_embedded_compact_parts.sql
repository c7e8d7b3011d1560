-- The embedded store writes its tables' new parts in ClickHouse's Compact format, up to 256 MiB
-- (uncompressed; a merge past it writes a Wide part, as any part past 10 MiB is by default).
-- A Wide part is a file or two per column and subcolumn (136 for otel_traces, 142 for
-- runmeter_calls; a Compact part ~12), and the collector inserts every flush: on the disk these
-- were measured on (ext4 without a journal, whose inode allocator reads each inode freed in the
-- last minutes while it looks for a free one) creating those files was a large part of chDB's CPU
-- on an insert. benchmarks/store_parts.py, the three tables' rows in flushes of 40,960 spans: 4.8
-- against 3.4 µs a span inserting (0.76x), 9.3 against 7.3 inserting and merging (0.81x); on
-- tmpfs, where a file costs little, 0.91x and 1.04x. Queries on the Compact parts took no longer.
-- A server's tables are left as they are: other writers (the OpenTelemetry Collector's exporter)
-- may share them.
{{embedded:ALTER TABLE otel_traces MODIFY SETTING min_bytes_for_wide_part = 268435456}};

{{embedded:ALTER TABLE runmeter_calls MODIFY SETTING min_bytes_for_wide_part = 268435456}};

{{embedded:ALTER TABLE runmeter_runs MODIFY SETTING min_bytes_for_wide_part = 268435456}};
