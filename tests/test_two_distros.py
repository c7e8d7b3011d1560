"""runmeter beside opentelemetry-distro (both installed in .venv-otel-distro, made by `make test`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runmeter.exporter import Store
from runmeter.testing import Reply, Simulator
from tests.test_storage_processes import AGENT
from tests.test_zero_code import _spans

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv-otel-distro" / "bin" / "python"
INSTRUMENT = ROOT / ".venv" / "bin" / "opentelemetry-instrument"


def _run(tmp_path: Path, **env_extra: str) -> subprocess.CompletedProcess[str]:
    assert PYTHON.exists(), "make test creates .venv-otel-distro"
    (tmp_path / "agent.py").write_text(AGENT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST", "VIRTUAL_ENV"))}
    with Simulator() as sim:
        sim.queue(Reply(input_tokens=57, output_tokens=21, cached_tokens=32))
        env.update(SIM_URL=sim.openai_url, **env_extra)
        return subprocess.run([str(INSTRUMENT), str(PYTHON), "agent.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_choosing_runmeter_stores_runs_with_both_distros_installed(tmp_path: Path) -> None:
    proc = _run(tmp_path, OTEL_PYTHON_DISTRO="runmeter", OTEL_PYTHON_CONFIGURATOR="runmeter")
    assert proc.returncode == 0, proc.stderr
    with Store(f"chdb://{tmp_path / '.runmeter'}").session() as c:
        assert c.query("SELECT Name, CostUsd FROM runmeter_runs_current").result_rows == [("stored-run", 0.000771)]


def test_with_the_plain_sdk_configurator_spans_are_still_priced_but_no_runs_are_stored(tmp_path: Path) -> None:
    proc = _run(tmp_path, OTEL_PYTHON_DISTRO="distro", OTEL_PYTHON_CONFIGURATOR="configurator", OTEL_TRACES_EXPORTER="console")
    assert proc.returncode == 0, proc.stderr
    chat = next(s for s in _spans(proc.stdout) if s["name"] == "chat gpt-5.5")
    assert chat["attributes"]["runmeter.cost.usd"] == 0.000771  # runmeter's instrumentation prices its own spans
    assert not (tmp_path / ".runmeter").exists()  # no RunProcessor, no store
