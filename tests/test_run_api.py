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
