"""The collector's settings: ``[collector]`` in ``runmeter.toml``, ``RUNMETER_COLLECTOR_*``, or flags."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CollectorSettings"]


class CollectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Loopback unless told otherwise. Listening on other addresses takes a tokens file, or
    # allow_unauthenticated = true (a private network, or a Collector in front that authenticates).
    grpc_endpoint: str = "127.0.0.1:4317"
    http_endpoint: str = "127.0.0.1:4318"
    # /healthz, /readyz and /metrics (Prometheus), apart from the OTLP ports so probes need no token.
    admin_endpoint: str = "127.0.0.1:8888"
    allow_unauthenticated: bool = False
    # Labels of the run metrics on /metrics: none by default (a series per owner or project each
    # client could make); "owner" and "project" on request. Run names never: they are unbounded.
    metrics_run_labels: list[Literal["owner", "project"]] = Field(default_factory=list)
    wal_dir: str = ".runmeter-collector/wal"
    wal_max_bytes: int = Field(default=1 << 30, gt=0)
    wal_segment_bytes: int = Field(default=64 << 20, gt=0)
    # One request on the wire (HTTP body, compressed) and after gunzip (HTTP) or as a gRPC message.
    max_request_bytes: int = Field(default=16 << 20, gt=0)
    max_decompressed_bytes: int = Field(default=64 << 20, gt=0)
    max_attributes_per_span: int = Field(default=256, gt=0)
    max_attribute_value_length: int = Field(default=65_536, gt=0)
    tls_cert: str | None = None
    tls_key: str | None = None
    # With a client CA, clients must present a certificate it signed (mTLS).
    tls_client_ca: str | None = None
    tokens_file: str | None = None
    drain_timeout_s: float = Field(default=30.0, gt=0)
    retry_after_s: int = Field(default=5, ge=1)
    log_format: str = Field(default="json", pattern="^(json|text)$")
    # Processing (conversion, pricing, run assembly, rows) in worker processes sharded by trace id:
    # "auto" is one per usable core; 0 processes on a thread of the collector's own process.
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    # Workers run at this nice value: acknowledging requests (this process) comes first, and the
    # log holds what processing has not caught up with (it refuses, retryably, when full).
    worker_nice: int = Field(default=10, ge=0, le=19)
    # How workers encode rows for ClickHouse: "auto", runmeter's block writer in C (exporter/_blocks.c)
    # for its tables' column types, anything else clickhouse-connect's compiled codec when installed
    # (pip install 'clickhouse-connect[rust]'), else its Python one; "rust" and "python" use that
    # clickhouse-connect codec for every block ("rust" insists on it).
    native_codec: Literal["auto", "rust", "python"] = "auto"
    # Spans and run records go to ClickHouse in batches of about this many seconds (32,768 spans at
    # most per worker): about one insert a second, as ClickHouse asks. Once the input pauses
    # (processing caught up, no request for half a second) what waits goes at once.
    insert_interval_s: float = Field(default=1.0, gt=0, le=60)
    # Requests read and checked at once, per protocol: with the size limits, this bounds what intake
    # holds - see docs/collector.md, "Memory". More wait their turn unread: over HTTP each on its
    # connection; over gRPC up to max_queued_requests of them, and past that a client is told
    # RESOURCE_EXHAUSTED (retryable).
    max_concurrent_requests: int = Field(default=4, ge=1)
    max_queued_requests: int = Field(default=16, ge=0)
    # Slow or idle clients: a connection that has not sent a whole request head within
    # http_idle_timeout_s (or sits idle that long between requests) is closed; a body must arrive
    # within http_body_timeout_s; past http_max_connections new connections get 503 and are closed.
    # gRPC: a connection idle for grpc_max_idle_s, or older than grpc_max_age_s, is closed (after a
    # grace period for the calls in flight); keepalive pings from clients at most every 10 s.
    http_idle_timeout_s: float = Field(default=15.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    http_max_connections: int = Field(default=1024, ge=1)
    grpc_max_idle_s: float = Field(default=300.0, gt=0)
    grpc_max_age_s: float = Field(default=1800.0, gt=0)

    def worker_count(self) -> int:
        if self.workers == "auto":
            return max(1, min(usable_cores(), 16))
        return self.workers


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, and a cgroup (v2) CPU limit - a container's
    ``resources.limits.cpu`` - when there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores
