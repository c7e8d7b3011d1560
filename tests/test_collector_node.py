"""A Node.js service with the OpenTelemetry JS SDK's OTLP/gRPC and OTLP/HTTP exporters (``make test``
installs them with ``npm ci`` in tests/node): its spans arrive as runs with the right costs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.collector_rig import mini_cost, running
from tests.test_collector_faults import _tokens

NODE_DIR = Path(__file__).parent / "node"


@pytest.mark.slow
def test_node_sdk_grpc_and_http_exporters_arrive_as_priced_runs(tmp_path: Path) -> None:
    assert (NODE_DIR / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-grpc").is_dir(), \
        "the JS SDK is not installed: run `make test` (it runs `npm ci` in tests/node)"
    with running(tmp_path, tokens_file=str(_tokens(tmp_path))) as c:
        env = {**os.environ, "GRPC_URL": f"http://{c.grpc}", "HTTP_URL": c.http, "TOKEN": "alpha-secret"}
        out = subprocess.run(["node", "send.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        ids = json.loads(out.stdout.strip().splitlines()[-1])
        rows = c.rows(
            "SELECT TraceId, CostUsd, LlmCalls, Project, ServiceName FROM runmeter_runs FINAL "
            f"WHERE TraceId IN ('{ids['grpc']}', '{ids['http']}')"
        )
        by_trace = {r[0]: r[1:] for r in rows}
        expected = mini_cost(3000, 150)
        assert by_trace[ids["grpc"]] == (pytest.approx(expected, rel=1e-9), 2, "alpha", "node-agent-grpc")
        assert by_trace[ids["http"]] == (pytest.approx(expected, rel=1e-9), 2, "alpha", "node-agent-http")
