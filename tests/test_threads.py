"""Calls made in worker threads belong to the run that handed the work over.

Without the context carried into the thread, an LLM call made in a ``ThreadPoolExecutor`` worker
inside a run started a trace of its own: the run's cost left it out, and the run's budget was not
checked before it. Every call here: gpt-4o-mini, 1,000 tokens in x $0.15/M + 20 out x $0.60/M =
$0.000162.
"""

from __future__ import annotations

import asyncio
import multiprocessing.pool
import multiprocessing.process
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

import runmeter
from runmeter import Budget, BudgetExceeded
from runmeter.instrumentation import ThreadsInstrumentor
from runmeter.testing import Reply
from tests.instrumented import Rig

CALL = Decimal("0.000162")


def _answer_all(rig: Rig) -> None:
    rig.sim.responder = lambda req: Reply(input_tokens=1_000, output_tokens=20)


def _call(client: Any, i: int) -> int:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"part {i}"}])
    return i


def test_calls_in_a_thread_pool_and_in_threads_count_in_the_run(rig: Rig) -> None:
    _answer_all(rig)
    client = rig.openai()
    with runmeter.run("parallel", owner="ana", tracer_provider=rig.tracer_provider) as run:
        _call(client, -1)
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda i: _call(client, i), range(4))) == [0, 1, 2, 3]
        threads = [threading.Thread(target=_call, args=(client, 10 + i)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run.accept()
    rig.processor.force_flush()
    (record,) = rig.sink.runs  # one run: no implicit run of a lone call in a worker
    assert record.name == "parallel" and record.llm_calls == 7 and record.cost_usd == 7 * CALL
    root = next(s for s in rig.spans() if s.name == "invoke_agent parallel")
    assert {s.context.trace_id for s in rig.llm_spans()} == {root.context.trace_id}


def test_the_runs_budget_is_checked_before_a_call_in_a_worker(rig: Rig) -> None:
    _answer_all(rig)
    client = rig.openai()
    with pytest.raises(BudgetExceeded, match="max_llm_calls"):
        with runmeter.run("capped", budget=Budget(max_llm_calls=2), tracer_provider=rig.tracer_provider):
            with ThreadPoolExecutor(1) as pool:  # one worker: the calls go in order
                for f in [pool.submit(_call, client, i) for i in range(4)]:
                    f.result()
    assert rig.sim.count("/chat/completions") == 2  # the third call was refused before it was sent


def test_a_thread_subclass_that_overrides_run_carries_the_run(rig: Rig) -> None:
    _answer_all(rig)
    client = rig.openai()

    class Worker(threading.Thread):
        def run(self) -> None:
            _call(client, 1)

    with runmeter.run("subclassed", tracer_provider=rig.tracer_provider):
        _call(client, 0)
        worker = Worker()
        worker.start()
        worker.join()
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 2 and record.cost_usd == 2 * CALL


def test_a_multiprocessing_thread_pool_shares_the_runs_ledger(rig: Rig) -> None:
    """multiprocessing.pool.ThreadPool runs its tasks in threads of this process: the run itself,
    not a copy handed over, so the budget sees every call (2 allowed, the third refused)."""
    _answer_all(rig)
    client = rig.openai()
    with pytest.raises(BudgetExceeded, match="max_llm_calls"):
        with runmeter.run("capped", budget=Budget(max_llm_calls=2), tracer_provider=rig.tracer_provider):
            with multiprocessing.pool.ThreadPool(1) as pool:
                pool.map(lambda i: _call(client, i), range(4))
    assert rig.sim.count("/chat/completions") == 2


def test_a_task_runs_in_its_submitters_context_not_the_one_its_worker_started_in(rig: Rig) -> None:
    """A long-lived pool whose threads were started inside a run: a task submitted after the run,
    outside any, is not the run's."""
    _answer_all(rig)
    client = rig.openai()
    pool = ThreadPoolExecutor(1)
    try:
        with runmeter.run("first", tracer_provider=rig.tracer_provider) as run:
            pool.submit(_call, client, 1).result()  # starts the pool's thread in this run's context
            run.accept()
        pool.submit(_call, client, 2).result()
    finally:
        pool.shutdown()
    rig.processor.force_flush()
    runs = {r.name: r for r in rig.sink.runs}
    assert runs["first"].llm_calls == 1 and runs["first"].cost_usd == CALL
    (other,) = [r for r in runs.values() if r.name != "first"]
    assert other.implicit and other.llm_calls == 1


def test_asyncio_run_in_executor_carries_the_run(rig: Rig) -> None:
    _answer_all(rig)
    client = rig.openai()

    @runmeter.run("async-agent", tracer_provider=rig.tracer_provider)
    async def agent() -> list[int]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(None, _call, client, i) for i in range(3))))

    assert asyncio.run(agent()) == [0, 1, 2]
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 3 and record.cost_usd == 3 * CALL


def test_uninstrument_restores_the_standard_library() -> None:
    from wrapt import FunctionWrapper

    runmeter.run("any")  # switches it on, once
    assert isinstance(ThreadPoolExecutor.__dict__["submit"], FunctionWrapper)
    ThreadsInstrumentor().uninstrument()
    try:
        assert not isinstance(ThreadPoolExecutor.__dict__["submit"], FunctionWrapper)
        assert not isinstance(threading.Thread.__dict__["start"], FunctionWrapper)
        assert not isinstance(threading.Thread.__dict__["_bootstrap_inner"], FunctionWrapper)
        assert not isinstance(ProcessPoolExecutor.__dict__["submit"], FunctionWrapper)
        assert not any(isinstance(multiprocessing.pool.Pool.__dict__[m], FunctionWrapper) for m in ("apply_async", "_map_async", "imap", "imap_unordered"))
        assert not isinstance(multiprocessing.process.BaseProcess.__dict__["start"], FunctionWrapper)
    finally:
        ThreadsInstrumentor().instrument()


def test_runmeters_own_threads_belong_to_no_run(rig: Rig) -> None:
    """A background thread of runmeter's own started by the first run (its writer, say) must not
    carry that run for the rest of the process."""
    from opentelemetry import trace

    seen: dict[str, bool] = {}

    def look(key: str) -> None:
        seen[key] = trace.get_current_span().get_span_context().is_valid

    with runmeter.run("owner", tracer_provider=rig.tracer_provider):
        ours = threading.Thread(target=look, args=("runmeter-writer",), name="runmeter-writer")
        theirs = threading.Thread(target=look, args=("app",), name="app-worker")
        for t in (ours, theirs):
            t.start()
            t.join()
    assert seen == {"runmeter-writer": False, "app": True}
