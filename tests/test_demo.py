"""`make demo` end to end: simulated providers, agents through opentelemetry-instrument, reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runmeter.exporter import Store


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST"))}
    env["COLUMNS"] = "200"
    proc = subprocess.run([sys.executable, "-m", "runmeter.demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for needle in ("Cost per accepted run, by model", "Model bake-off", "If gpt-5.5's traffic moved to gpt-4o-mini",
                   "stopped by budget: max_identical_repeats", "stopped by budget: max_cost_usd", "Loop signals", "Wrote report.html"):
        assert needle in out, needle
    assert (tmp_path / "report.html").stat().st_size > 5_000
    with Store(f"chdb://{tmp_path / '.runmeter-demo' / 'store'}").session() as c:
        outcomes = dict(c.query("SELECT Outcome, count() FROM runmeter_runs_current WHERE ParentRunId = '' GROUP BY Outcome").result_rows)
        models = {r[0] for r in c.query("SELECT DISTINCT Model FROM runmeter_calls WHERE Kind = 'llm'").result_rows}
        local = c.query("SELECT sum(CostUsd), any(CostSource), any(Provider) FROM runmeter_calls WHERE Model = 'llama-3.3-70b'").result_rows[0]
    # gpt-5.5: 6 fixed, 2 wrong fixes, 1 gives up, 1 silent, 1 loop and 1 runaway stopped by budgets;
    # gpt-4o-mini: 5 / 3 / 1 / 1; claude: 5 / 1 / - / 1; local: 4 / 1
    assert outcomes == {"accepted": 20, "rejected": 7, "abandoned": 2, "failed": 2, "": 3}
    assert {"gpt-5.5", "gpt-4o-mini", "claude-haiku-4-5", "llama-3.3-70b"} <= models
    assert local[0] > 0 and local[1] == "gpu-hour:runmeter.toml" and local[2] == "vllm"  # the local model, priced per GPU-hour
