"""runmeter.run() and runmeter.tool(): spans, nesting, async tasks, decorators, budgets on tools."""

from __future__ import annotations

import asyncio

import pytest

import runmeter
from runmeter import Budget, BudgetExceeded
from tests.instrumented import Rig


def by_name(rig: Rig) -> dict[str, object]:
    return {s.name: s for s in rig.spans()}


def test_run_span_and_outcome(rig: Rig) -> None:
    with runmeter.run("triage", owner="ana", project="sales", task_id="T-1", tracer_provider=rig.tracer_provider) as run:
        with runmeter.tool("read_file", resource="inbox.txt", args={"path": "inbox.txt"}, tracer_provider=rig.tracer_provider):
            pass
        run.reject("wrong customer")
    spans = by_name(rig)
    root = spans["invoke_agent triage"]
    a = root.attributes
    assert a["gen_ai.operation.name"] == "invoke_agent" and a["gen_ai.agent.name"] == "triage"
    assert a["runmeter.run.root"] is True and a["runmeter.run.id"] == run.run_id
    assert (a["runmeter.run.owner"], a["runmeter.run.project"], a["runmeter.task.id"]) == ("ana", "sales", "T-1")
    assert (a["runmeter.run.outcome"], a["runmeter.run.outcome_reason"]) == ("rejected", "wrong customer")
    t = spans["execute_tool read_file"].attributes
    assert t["gen_ai.tool.name"] == "read_file" and t["runmeter.tool.resource"] == "inbox.txt"
    assert len(t["runmeter.tool.args_hash"]) == 16 and t["runmeter.run.id"] == run.run_id and t["runmeter.run.owner"] == "ana"
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.outcome == "rejected" and record.tool_calls == {"read_file": 1}


def test_exception_marks_failed_and_is_reraised(rig: Rig) -> None:
    boom = KeyError("x")
    with pytest.raises(KeyError) as info:
        with runmeter.run("crashy", tracer_provider=rig.tracer_provider):
            raise boom
    assert info.value is boom
    a = by_name(rig)["invoke_agent crashy"].attributes
    assert a["runmeter.run.outcome"] == "failed" and a["error.type"] == "KeyError"


def test_nested_runs_are_sub_runs(rig: Rig) -> None:
    with runmeter.run("parent", tracer_provider=rig.tracer_provider) as parent:
        with runmeter.run("child", tracer_provider=rig.tracer_provider) as child:
            pass
    assert by_name(rig)["invoke_agent child"].attributes["runmeter.run.parent_id"] == parent.run_id
    rig.processor.force_flush()
    records = {r.name: r for r in rig.sink.runs}
    assert records["child"].parent_run_id == parent.run_id and child.run_id == records["child"].run_id


def test_runs_work_across_asyncio_tasks_and_as_decorators(rig: Rig) -> None:
    @runmeter.tool("fetch", resource_arg="url", tracer_provider=rig.tracer_provider)
    async def fetch(url: str) -> str:
        await asyncio.sleep(0)
        return url

    @runmeter.run("crawler", tracer_provider=rig.tracer_provider)
    async def crawl() -> list[str]:
        return await asyncio.gather(*(asyncio.create_task(fetch(url=f"https://x/{i}")) for i in range(3)))

    assert asyncio.run(crawl()) == [f"https://x/{i}" for i in range(3)]
    spans = rig.spans()
    root = next(s for s in spans if s.name == "invoke_agent crawler")
    tools = [s for s in spans if s.name == "execute_tool fetch"]
    assert len(tools) == 3
    assert all(t.attributes["runmeter.run.id"] == root.attributes["runmeter.run.id"] for t in tools)
    assert {t.attributes["runmeter.tool.resource"] for t in tools} == {"https://x/0", "https://x/1", "https://x/2"}

    @runmeter.run("sync-job", tracer_provider=rig.tracer_provider)
    def job(x: int) -> int:
        return x * 2

    assert job(21) == 42 and job(1) == 2
    assert sum(1 for s in rig.spans() if s.name == "invoke_agent sync-job") == 2


def test_tool_budget_and_allow_list_stop_before_the_tool_runs(rig: Rig) -> None:
    ran = []
    with pytest.raises(BudgetExceeded) as info:
        with runmeter.run("tools", budget=Budget(allowed_tools={"read_file"}), tracer_provider=rig.tracer_provider):
            with runmeter.tool("read_file", args={"p": 1}, tracer_provider=rig.tracer_provider):
                ran.append("read_file")
            with runmeter.tool("delete_repo", tracer_provider=rig.tracer_provider):
                ran.append("delete_repo")
    assert ran == ["read_file"] and info.value.limit == "allowed_tools"


def test_identical_repeats_stop_a_loop(rig: Rig) -> None:
    calls = 0
    with pytest.raises(BudgetExceeded, match="max_identical_repeats"):
        with runmeter.run("looper", budget=Budget(max_identical_repeats=2), tracer_provider=rig.tracer_provider):
            for _ in range(10):
                with runmeter.tool("search", args={"q": "same"}, tracer_provider=rig.tracer_provider):
                    calls += 1
    assert calls == 3  # the first call and two repeats
    root = by_name(rig)["invoke_agent looper"]
    names = [e.name for e in root.events]
    assert "runmeter.loop.detected" in names and "runmeter.budget.exceeded" in names


def test_outcome_after_end_is_a_clear_error(rig: Rig) -> None:
    with runmeter.run("done", tracer_provider=rig.tracer_provider) as run:
        pass
    with pytest.raises(RuntimeError, match="late outcome"):
        run.accept()


def test_bad_arguments(rig: Rig) -> None:
    with pytest.raises(ValueError):
        runmeter.run("")
    with pytest.raises(ValueError):
        runmeter.run("x", budget={"max_cost_usd": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        runmeter.run("x", owner=5)  # type: ignore[arg-type]


_MARKING_AGENT = """
import runmeter
with runmeter.run("marked", owner="ana") as run:
    with runmeter.tool("read_file", resource="a.py"):
        pass
    run.accept()
with runmeter.run("second") as run2:
    run2.reject("wrong")
print("agent finished:", run.outcome, run2.outcome)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["plain python", "sampled out", "broken config"])
def test_marking_a_run_never_breaks_the_agent(tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    """Telemetry off, sampled out or misconfigured: the agent finishes, warned once in one line each."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "agent.py").write_text(_MARKING_AGENT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST_"))}
    env["OTEL_TRACES_EXPORTER"] = "console"
    cmd = [sys.executable, "agent.py"]
    if how != "plain python":
        cmd = [str(Path(sys.executable).parent / "opentelemetry-instrument"), *cmd]
    if how == "sampled out":
        env.update(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0")
    if how == "broken config":
        (tmp_path / "runmeter.toml").write_text("[runs\ngrace_s = \n")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "agent finished: accepted rejected" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("runmeter: ")]
    expected = ["not being recorded"] if how != "broken config" else ["runmeter.toml:1: not valid TOML", "not being recorded"]
    assert len(warnings) == len(expected), proc.stderr
    for line, words in zip(warnings, expected):
        assert words in line
