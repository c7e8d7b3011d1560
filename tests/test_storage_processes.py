"""Several processes, one embedded store; a process killed mid-export; the distro's default store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from opentelemetry.sdk.trace.export import SpanExportResult

from runmeter.exporter import ClickHouseSpanExporter, Spool, Store, Writer
from tests.spans import make_span

HERE = Path(__file__).resolve().parent
WRITER = [sys.executable, str(HERE / "writer_proc.py")]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "OTEL_", "RUNMETER_"))}


def test_sigkill_after_acknowledging_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    url, spool = f"chdb://{tmp_path / 'store'}", tmp_path / "spool"
    child = subprocess.Popen([*WRITER, "spans", url, str(spool), "1", "1000000"], stdout=subprocess.PIPE, text=True, env=_env())
    acked = []
    assert child.stdout is not None
    while len(acked) < 60:
        line = child.stdout.readline()
        assert line, "the writer died early"
        acked.append(int(line))
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    writer = Writer(Store(url), Spool(spool), background=False)  # the next process to open the store
    assert writer.flush(timeout_s=60)
    with Store(url).session() as c:
        rows = c.query("SELECT reinterpretAsUInt64(reverse(unhex(TraceId))) AS t, count() FROM otel_traces GROUP BY t").result_rows
    stored = dict(rows)
    missing = [t for t in acked if t not in stored]
    assert not missing, f"acknowledged but lost: {missing[:10]}"
    assert all(n == 1 for n in stored.values()), "a batch was counted twice"


def test_two_writers_and_a_reader_on_one_embedded_store(tmp_path: Path) -> None:
    url, spool = f"chdb://{tmp_path / 'store'}", tmp_path / "spool"
    a = subprocess.Popen([*WRITER, "runs", url, str(spool), "1", "21"], stdout=subprocess.PIPE, text=True, env=_env())
    b = subprocess.Popen([*WRITER, "runs", url, str(spool), "1001", "1021"], stdout=subprocess.PIPE, text=True, env=_env())
    reads = 0
    while a.poll() is None or b.poll() is None:  # a report while they run
        with Store(url, lock_timeout_s=120).session() as c:
            c.query("SELECT count() FROM runmeter_runs_current")
        reads += 1
        time.sleep(0.2)
    for p in (a, b):
        p.communicate()
    assert a.returncode == 0 and b.returncode == 0 and reads >= 1
    Writer(Store(url), Spool(spool), background=False).flush(timeout_s=60)
    with Store(url).session() as c:
        runs = c.query("SELECT count(), uniqExact(RunId), sum(LlmCalls) FROM runmeter_runs_current").result_rows[0]
        spans = c.query("SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces").result_rows[0]
        calls = c.query("SELECT count() FROM runmeter_calls").result_rows[0][0]
    assert runs == (40, 40, 80)  # every run once, two calls each
    assert spans == (120, 120)
    assert calls == 80


def _run_agent(cwd: Path, sim_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``opentelemetry-instrument python agent.py ...`` in ``cwd``, against the simulator."""
    return subprocess.run([str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "agent.py", *args],
                          cwd=cwd, env=dict(_env(), SIM_URL=sim_url), capture_output=True, text=True, timeout=180)


def _answered_agent(cwd: Path, files: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Write the agent's files, run ``agent.py`` zero code against a simulator that answers every
    call with gpt-5.5's 57 in (32 cached) and 21 out ($0.000771); the result and the requests sent."""
    from runmeter.testing import Reply, Simulator

    for name, text in files.items():
        (cwd / name).write_text(text)
    with Simulator() as sim:
        sim.responder = lambda req: Reply(input_tokens=57, output_tokens=21, cached_tokens=32)
        proc = _run_agent(cwd, sim.openai_url, *args)
        sent = sim.count("/chat/completions")
    assert proc.returncode == 0, proc.stderr
    return proc, sent


def _cli_json(cwd: Path, url: str, *args: str) -> Any:
    """``runmeter --store url ... --json``, as a user runs it."""
    import json

    out = subprocess.run([str(Path(sys.executable).parent / "runmeter"), "--store", url, *args, "--json"],
                         cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


AGENT = """
import os, openai, runmeter
client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
with runmeter.run("stored-run", owner="ana") as run:
    client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    run.accept()
"""


def test_opentelemetry_instrument_stores_runs_in_the_embedded_store_by_default(tmp_path: Path) -> None:
    from runmeter.testing import Reply, Simulator

    (tmp_path / "agent.py").write_text(AGENT)
    with Simulator() as sim:
        sim.queue(Reply(input_tokens=57, output_tokens=21, cached_tokens=32))
        env = dict(_env(), SIM_URL=sim.openai_url)
        proc = subprocess.run([str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "agent.py"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".runmeter").is_dir()  # the default store, like mlruns/
    with Store(f"chdb://{tmp_path / '.runmeter'}").session() as c:
        runs = c.query("SELECT Name, Owner, Outcome, CostUsd, LlmCalls FROM runmeter_runs_current").result_rows
        spans = c.query("SELECT count() FROM otel_traces").result_rows[0][0]
    assert runs == [("stored-run", "ana", "accepted", 0.000771, 1)]
    assert spans == 2


def test_console_and_clickhouse_exporters_share_one_run_processor(tmp_path: Path) -> None:
    from tests.test_zero_code import _spans
    from runmeter.testing import Reply, Simulator

    (tmp_path / "agent.py").write_text(AGENT)
    with Simulator() as sim:
        sim.queue(Reply(input_tokens=57, output_tokens=21, cached_tokens=32))
        env = dict(_env(), SIM_URL=sim.openai_url, OTEL_TRACES_EXPORTER="console,clickhouse")
        proc = subprocess.run([str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "agent.py"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = _spans(proc.stdout)
    assert {s["name"] for s in printed} == {"chat gpt-5.5", "invoke_agent stored-run"}
    with Store(f"chdb://{tmp_path / '.runmeter'}").session() as c:
        assert c.query("SELECT count() FROM runmeter_runs_current").result_rows[0][0] == 1  # one record, not one per exporter
        assert c.query("SELECT count() FROM otel_traces").result_rows[0][0] == 2


def test_without_chdb_the_error_says_what_to_do(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['chdb'] = None\n"
        "from runmeter.exporter import Store, StoreError\n"
        f"try:\n    Store('chdb://{tmp_path / 's'}')._connect()\nexcept StoreError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert "pip install 'runmeter[embedded]'" in out.stdout and "RUNMETER_CLICKHOUSE_URL" in out.stdout


READER = """
import sys
from runmeter.exporter import Store
with Store(sys.argv[1], lock_timeout_s=10).session() as c:
    print(c.query("SELECT count() FROM otel_traces").result_rows[0][0])
"""


def test_a_busy_writer_keeps_its_session_and_hands_it_to_a_waiting_process(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    writer = Writer(Store(url), Spool(tmp_path / "spool"), hold_s=1.0, max_hold_s=30.0)  # as the collector keeps it
    exporter = ClickHouseSpanExporter(writer=writer, spool=False)
    sent = 0

    def send() -> None:
        nonlocal sent
        sent += 1
        assert exporter.export([make_span("step", 1, trace_id=sent)]) is SpanExportResult.SUCCESS
        time.sleep(0.05)

    busy_until = time.monotonic() + 3.5
    while time.monotonic() < busy_until:
        send()
        assert writer.query("SELECT count() > 0 FROM otel_traces") == [(1,)]  # reads beside the inserts (its own client)
    assert writer.sessions_opened == 1  # one chDB session across many hold_s of steady inserts
    # Another process wants the store (as `runmeter runs` would) and waits at most 10 s, less
    # than the writer's 30 s cap: it gets in only because the writer sees it waiting.
    reader = subprocess.Popen([sys.executable, "-c", READER, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    while reader.poll() is None:
        send()
    out, err = reader.communicate()
    assert reader.returncode == 0, err[-2000:]
    assert 0 < int(out) <= sent
    assert not (tmp_path / "store.waiting").exists()  # no one waits any more: nothing left behind
    send()
    assert writer.sessions_opened >= 2  # and takes the store back (once more per hand-over) for its inserts
    assert writer.query("SELECT count() FROM otel_traces") == [(sent,)]
    exporter.shutdown()
    with Store(url).session() as c:
        assert c.query("SELECT count() FROM otel_traces").result_rows[0][0] == sent


FORKING_AGENT = """
import multiprocessing as mp, os, sys, openai, runmeter

def call(i):
    client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
    client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": f"part {i}"}])
    return i

def worker(n):
    for i in range(n):
        call(i)

if __name__ == "__main__":
    fork = mp.get_context("fork")
    with runmeter.run("forked-run", owner="ana") as run:
        call(-1)
        if sys.argv[1] == "pool":  # a pool is terminated (SIGTERM) when its with-block ends
            with fork.Pool(3) as pool:
                assert sorted(pool.map(call, range(9))) == list(range(9))
        else:  # processes that leave through os._exit once their target returns
            procs = [fork.Process(target=worker, args=(3,)) for _ in range(3)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
                assert p.exitcode == 0
        run.accept()
    print("run", run.run_id)
"""


@pytest.mark.parametrize("how", ["pool", "process"])
def test_calls_made_in_forked_workers_are_stored_and_reported(tmp_path: Path, how: str) -> None:
    """1 call in the agent + 9 in 3 forked workers, each $0.000771 (gpt-5.5, 57 in incl. 32 cached,
    21 out): every report shows 10 calls and $0.00771, not the parent's 1 call and $0.000771."""
    from runmeter.testing import Reply, Simulator

    (tmp_path / "agent.py").write_text(FORKING_AGENT)
    with Simulator() as sim:
        sim.responder = lambda req: Reply(input_tokens=57, output_tokens=21, cached_tokens=32)
        env = dict(_env(), SIM_URL=sim.openai_url)
        proc = subprocess.run([str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "agent.py", how],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split("run ", 1)[1].split()[0]
    url = f"chdb://{tmp_path / '.runmeter'}"
    Writer(Store(url), Spool(tmp_path / ".runmeter-spool"), background=False).flush(timeout_s=60)  # nothing left behind
    with Store(url).session() as c:
        calls = c.query("SELECT count(), round(sum(CostUsd), 6) FROM runmeter_calls WHERE Kind = 'llm' AND Duplicate = 0").result_rows[0]
        spans = c.query("SELECT count() FROM otel_traces WHERE SpanName = 'chat gpt-5.5'").result_rows[0][0]
    assert calls == (10, 0.00771) and spans == 10

    def cli(*args: str) -> Any:
        return _cli_json(tmp_path, url, *args)

    (row,) = cli("runs")
    assert (row["RunId"], row["LlmCalls"], row["CostUsd"], row["Outcome"], row["Pricing"]) == (run_id, 10, 0.00771, "accepted", "priced")
    (group,) = cli("report")
    assert (group["Runs"], group["TotalCostUsd"], group["MeanLlmCalls"], group["CostPerAcceptedRun"]) == (1, 0.00771, 10, 0.00771)
    detail = cli("run", run_id)
    assert (detail["run"]["LlmCalls"], detail["run"]["CostUsd"]) == (10, 0.00771)


TOOL_LOOP_AGENT = """
import json, os, openai, runmeter
client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)

def read_file(path):  # a plain function: no runmeter code around the tools
    return "def add(a, b): return a - b"

with runmeter.run("fix-add", owner="ana") as run:
    messages = [{"role": "user", "content": "Fix add()."}]
    while True:
        msg = client.chat.completions.create(model="gpt-5.5", messages=messages).choices[0].message
        if not msg.tool_calls:
            break
        messages.append(msg)
        for tc in msg.tool_calls:
            messages.append({"role": "tool", "tool_call_id": tc.id, "content": read_file(**json.loads(tc.function.arguments))})
    run.accept()
    print("run", run.run_id)
"""


def test_a_zero_code_tool_loop_is_counted_and_reported(tmp_path: Path) -> None:
    """The model asks for read_file(app.py) three times; the agent runs it with no runmeter code. The
    store and every report say 3 tool calls (not 0) and show the loop; 4 calls of $0.000771 each."""
    from runmeter.testing import Reply, Simulator, ToolCall

    (tmp_path / "agent.py").write_text(TOOL_LOOP_AGENT)
    with Simulator() as sim:
        sim.queue(*[Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, f"call_{i}")], input_tokens=57, output_tokens=21, cached_tokens=32)
                    for i in range(3)], Reply(text="Fixed.", input_tokens=57, output_tokens=21, cached_tokens=32))
        proc = _run_agent(tmp_path, sim.openai_url)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split("run ", 1)[1].split()[0]
    url = f"chdb://{tmp_path / '.runmeter'}"

    def cli(*args: str) -> Any:
        return _cli_json(tmp_path, url, *args)

    (row,) = cli("runs")
    assert (row["RunId"], row["LlmCalls"], row["ToolCalls"], row["CostUsd"]) == (run_id, 4, 3, 0.003084)
    loops = cli("loops")
    assert [(r["Kind"], r["Key"].split("#")[0], r["Count"]) for r in loops] == [("identical_tool_call", "read_file", 3)]


POOL_AGENT = """
import multiprocessing as mp, os, sys, openai, runmeter
from concurrent.futures import ProcessPoolExecutor

def call(i):
    client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
    client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": f"part {i}"}])
    return i

if __name__ == "__main__":
    method, kind = sys.argv[1].split("-")
    ctx = mp.get_context(method)
    pool = ProcessPoolExecutor(2, mp_context=ctx) if kind == "executor" else ctx.Pool(2)
    ids = []
    for name in ("first", "second"):  # one pool, made before either run, for both
        with runmeter.run(name, owner="ana") as run:
            call(-1)
            assert sorted(pool.map(call, range(4))) == list(range(4))
            run.accept()
        ids.append(run.run_id)
    pool.shutdown() if kind == "executor" else (pool.close(), pool.join())
    print("runs", *ids)
"""


@pytest.mark.parametrize("how", ["spawn-executor", "spawn-pool", "fork-pool"])
def test_calls_in_a_process_pool_count_in_the_run_that_handed_them_over(tmp_path: Path, how: str) -> None:
    """One pool, two runs, 1 + 4 calls of $0.000771 each: each run has its 5 calls ($0.003855). With
    spawn the workers start with no context (their calls were runs of their own); a fork pool made
    before the runs kept the context it was forked in, for every task of every run."""
    proc, _ = _answered_agent(tmp_path, {"agent.py": POOL_AGENT}, how)
    first, second = proc.stdout.split("runs ", 1)[1].split()
    rows = {r["RunId"]: r for r in _cli_json(tmp_path, f"chdb://{tmp_path / '.runmeter'}", "runs")}
    assert set(rows) == {first, second}  # no call outside them
    for run_id, name in ((first, "first"), (second, "second")):
        assert (rows[run_id]["Name"], rows[run_id]["LlmCalls"], rows[run_id]["CostUsd"]) == (name, 5, 0.003855)


SPAWNED_BUDGET_AGENT = """
import multiprocessing as mp, os, openai, runmeter
from runmeter import Budget, BudgetExceeded

def work(out):
    client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
    done = 0
    try:
        for i in range(3):
            client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": f"part {i}"}])
            done += 1
    except BudgetExceeded as stop:
        out.put((done, stop.limit))

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    with runmeter.run("bounded", budget=Budget(max_llm_calls=3)) as run:
        client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "plan"}])
        out = ctx.Queue()
        p = ctx.Process(target=work, args=(out,))
        p.start()
        p.join()
        print("child", *out.get(timeout=30))
    print("run", run.run_id)
"""


def test_a_spawned_process_checks_the_runs_budget_from_its_totals(tmp_path: Path) -> None:
    """max_llm_calls=3, one call made before the hand-over: the spawned child makes 2 and is stopped
    before its third; the run has 3 calls in all."""
    proc, sent = _answered_agent(tmp_path, {"agent.py": SPAWNED_BUDGET_AGENT})
    assert "child 2 max_llm_calls" in proc.stdout and sent == 3
    run_id = proc.stdout.split("run ", 1)[1].split()[0]
    (row,) = _cli_json(tmp_path, f"chdb://{tmp_path / '.runmeter'}", "runs")
    assert (row["RunId"], row["LlmCalls"], row["CostUsd"]) == (run_id, 3, 0.002313)


PARENT_AGENT = """
import os, subprocess, sys, openai, runmeter

client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
with runmeter.run("parent", owner="ana") as run:
    client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "plan"}])
    for part in ("a", "b"):  # a sub-agent program with no runmeter code, as a tool would start it
        subprocess.run([sys.executable, "child.py", part], check=True)
    run.accept()
print("run", run.run_id)
subprocess.run([sys.executable, "child.py", "after"], check=True)  # outside the run: a run of its own
"""

CHILD_AGENT = """
import os, sys, openai
client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": sys.argv[1]}])
print("traceparent" if os.environ.get("TRACEPARENT") else "none")
"""


def test_a_program_started_inside_a_run_counts_in_it(tmp_path: Path) -> None:
    """The agent starts two Python programs in its run and one after it: the run has 3 calls
    ($0.002313), the program after it a run of its own."""
    proc, _ = _answered_agent(tmp_path, {"agent.py": PARENT_AGENT, "child.py": CHILD_AGENT})
    assert proc.stdout.split() [:2] == ["traceparent", "traceparent"] and proc.stdout.split()[-1] == "none"
    run_id = proc.stdout.split("run ", 1)[1].split()[0]
    rows = {r["RunId"]: r for r in _cli_json(tmp_path, f"chdb://{tmp_path / '.runmeter'}", "runs")}
    assert (rows[run_id]["Name"], rows[run_id]["LlmCalls"], rows[run_id]["CostUsd"]) == ("parent", 3, 0.002313)
    (other,) = [r for r in rows.values() if r["RunId"] != run_id]
    assert other["LlmCalls"] == 1



BOUNDED_PARENT_AGENT = """
import os, subprocess, sys, openai, runmeter

client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
with runmeter.run("bounded", budget=runmeter.Budget(max_llm_calls=1)) as run:
    client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "plan"}])
    child = subprocess.run([sys.executable, "child.py", "a"], capture_output=True, text=True)
print("child", child.returncode, child.stderr.strip().splitlines()[-1])
"""


def test_a_program_started_inside_a_run_is_held_to_its_budget(tmp_path: Path) -> None:
    """max_llm_calls=1, spent in the agent: the program it starts is stopped before its call (the
    request is never sent)."""
    proc, sent = _answered_agent(tmp_path, {"agent.py": BOUNDED_PARENT_AGENT, "child.py": CHILD_AGENT})
    assert proc.stdout.startswith("child 1 runmeter.processor._budget.BudgetExceeded: ") and "max_llm_calls exceeded (2 of 1)" in proc.stdout
    assert sent == 1


POOL_BUDGET_AGENT = """
import os, openai, runmeter
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from runmeter import Budget, BudgetExceeded

def two_calls(i):
    client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
    for j in range(2):
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": f"{i}.{j}"}])

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        try:
            with runmeter.run("bounded", budget=Budget(max_llm_calls=2)):
                client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
                client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "plan"}])
                pool.submit(two_calls, 0).result()
        except BudgetExceeded as stop:
            print("stopped", stop.limit, stop.value, stop.threshold)
"""


def test_a_budget_stop_in_a_pool_task_reaches_the_caller(tmp_path: Path) -> None:
    """max_llm_calls=2, one call made before the task: the task's second call (the run's third) is
    refused, and the caller gets the BudgetExceeded itself (its limit, 3 of 2), not a pickling error."""
    proc, sent = _answered_agent(tmp_path, {"agent.py": POOL_BUDGET_AGENT})
    assert "stopped max_llm_calls 3 2" in proc.stdout and sent == 2
