-- One row per LLM call and tool call. Ordered by run so a run's calls are read together;
-- run totals are recomputed from here, so spans of one run written by several processes
-- (or arriving after their run was cut) still sum correctly.
CREATE TABLE IF NOT EXISTS {{local:runmeter_calls}} {{on_cluster}} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    RunId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Kind LowCardinality(String) CODEC(ZSTD(1)),
    Operation LowCardinality(String) CODEC(ZSTD(1)),
    Provider LowCardinality(String) CODEC(ZSTD(1)),
    Model LowCardinality(String) CODEC(ZSTD(1)),
    InputTokens UInt64 CODEC(T64, ZSTD(1)),
    OutputTokens UInt64 CODEC(T64, ZSTD(1)),
    CacheReadTokens UInt64 CODEC(T64, ZSTD(1)),
    CacheWriteTokens UInt64 CODEC(T64, ZSTD(1)),
    ReasoningTokens UInt64 CODEC(T64, ZSTD(1)),
    CostUsd Float64 CODEC(ZSTD(1)),
    Priced UInt8,
    Estimated UInt8,
    Duplicate UInt8,
    CostSource LowCardinality(String) CODEC(ZSTD(1)),
    ExternalCostUsd Float64 CODEC(ZSTD(1)),
    ToolName LowCardinality(String) CODEC(ZSTD(1)),
    ArgsHash String CODEC(ZSTD(1)),
    Resource String CODEC(ZSTD(1)),
    InputHash String CODEC(ZSTD(1)),
    DurationNs UInt64 CODEC(T64, ZSTD(1)),
    Error UInt8,
    Owner LowCardinality(String) CODEC(ZSTD(1)),
    Project LowCardinality(String) CODEC(ZSTD(1)),
    RunName LowCardinality(String) CODEC(ZSTD(1)),
    TaskId String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_model Model TYPE set(256) GRANULARITY 4
) ENGINE = {{engine:MergeTree}}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (RunId, Timestamp, SpanId)
TTL toDateTime(Timestamp) + toIntervalDay({{calls_ttl_days}})
SETTINGS index_granularity = 8192, {{dedup_setting}};

-- One row per run record. ReplacingMergeTree on Version: the write time, plus 2^62 for a
-- record assembled with the run's root. A whole record outranks a partial one (late spans
-- written as a rootless run, another replica's half) whenever written; among records alike the
-- latest (a re-send, a replay) wins. Read through runmeter_runs_current. Sums come from
-- runmeter_calls (runmeter_run_totals), never from one record.
CREATE TABLE IF NOT EXISTS {{local:runmeter_runs}} {{on_cluster}} (
    RunId String CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    RootSpanId String CODEC(ZSTD(1)),
    Name LowCardinality(String) CODEC(ZSTD(1)),
    Owner LowCardinality(String) CODEC(ZSTD(1)),
    Project LowCardinality(String) CODEC(ZSTD(1)),
    TaskId String CODEC(ZSTD(1)),
    ParentRunId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    StartTime DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    EndTime DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    Outcome LowCardinality(String),
    OutcomeReason String CODEC(ZSTD(1)),
    CostUsd Float64,
    CostByModel Map(LowCardinality(String), Float64),
    ExternalCostUsd Float64,
    InputTokens UInt64,
    OutputTokens UInt64,
    CacheReadTokens UInt64,
    CacheWriteTokens UInt64,
    ReasoningTokens UInt64,
    LlmCalls UInt32,
    UnpricedCalls UInt32,
    EstimatedCalls UInt32,
    ToolCalls Map(LowCardinality(String), UInt32),
    ToolCallsTotal UInt32,
    RepeatedContextReads Map(String, UInt32),
    LoopSignals Nested (Kind LowCardinality(String), Key String, Count UInt32),
    Budget Map(LowCardinality(String), String),
    Breaches Nested (Limit LowCardinality(String), Value Float64, Threshold Float64, Action LowCardinality(String)),
    Pricing LowCardinality(String),
    Incomplete UInt8,
    Implicit UInt8,
    Spans UInt32,
    Version UInt64
) ENGINE = {{engine:ReplacingMergeTree(Version)}}
PARTITION BY toYYYYMM(StartTime)
ORDER BY RunId
SETTINGS index_granularity = 8192, {{dedup_setting}};

-- Outcomes that arrive after the run (human review, the CLI). The latest event wins.
CREATE TABLE IF NOT EXISTS {{local:runmeter_outcomes}} {{on_cluster}} (
    RunId String CODEC(ZSTD(1)),
    Outcome LowCardinality(String),
    Reason String CODEC(ZSTD(1)),
    Time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    Source LowCardinality(String)
) ENGINE = {{engine:MergeTree}}
ORDER BY (RunId, Time)
SETTINGS index_granularity = 8192, {{dedup_setting}};

{{distributed:runmeter_calls:cityHash64(TraceId)}};

{{distributed:runmeter_runs:cityHash64(TraceId)}};

{{distributed:runmeter_outcomes:cityHash64(RunId)}};
