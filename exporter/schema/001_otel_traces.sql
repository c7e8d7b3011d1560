-- Spans, with exactly the columns and types of the OpenTelemetry Collector's ClickHouse
-- exporter, so Grafana's ClickHouse data source shows runmeter traces natively.
-- Partitioned by day (drop old days cheaply), ordered for "this service's spans of this
-- name over time"; bloom filters find a trace or an attribute without a full scan.
CREATE TABLE IF NOT EXISTS {{local:otel_traces}} {{on_cluster}} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = {{engine:MergeTree}}
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay({{traces_ttl_days}})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{dedup_setting}};

-- Each trace's time range, for Grafana's trace view. Every insert block writes a partial
-- row: read min(Start), max(End). (ClickHouse 26 refuses a SimpleAggregateFunction column
-- in a key, so unlike older Collector versions it is not partitioned by Start.)
CREATE TABLE IF NOT EXISTS {{local:otel_traces_trace_id_ts}} {{on_cluster}} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(Delta(4), ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(Delta(4), ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {{engine:AggregatingMergeTree}}
ORDER BY TraceId
SETTINGS index_granularity = 8192, {{dedup_setting}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:otel_traces_trace_id_ts_mv}} {{on_cluster}}
TO {{local:otel_traces_trace_id_ts}}
AS SELECT
    TraceId,
    min(toDateTime(Timestamp)) AS Start,
    max(toDateTime(Timestamp)) AS End
FROM {{local:otel_traces}}
WHERE TraceId != ''
GROUP BY TraceId;

{{distributed:otel_traces:cityHash64(TraceId)}};

{{distributed:otel_traces_trace_id_ts:cityHash64(TraceId)}};
