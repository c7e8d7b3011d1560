-- Alerts runmeter delivered (runmeter alerts run, and live alerts from agent processes): one row
-- per rule and key (a run, or a period), so a cron job that runs again sends nothing twice.
CREATE TABLE IF NOT EXISTS {{local:runmeter_alerts}} {{on_cluster}} (
    Rule LowCardinality(String),
    Key String CODEC(ZSTD(1)),
    Time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    Summary String CODEC(ZSTD(1))
) ENGINE = {{engine:ReplacingMergeTree(Time)}}
ORDER BY (Rule, Key)
SETTINGS index_granularity = 8192, {{dedup_setting}};

{{distributed:runmeter_alerts:cityHash64(Key)}};
