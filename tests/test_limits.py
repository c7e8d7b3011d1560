"""Spend limits by owner, project, model and task, across processes: ``[limits]``, checked before
each call from the spend stored in ClickHouse plus this process's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from runmeter.exporter import Store
from runmeter.limits import LimitRule, LimitSettings, base_model, stored_reader, usage_now
from runmeter.processor import BudgetExceeded, SpendLimit, SpendLimits
from runmeter.testing import Reply, Simulator

# gpt-4o-mini list prices (USD per million tokens), as published by OpenAI.
IN, OUT = 0.15, 0.60
# Each call of the agent below: 100,000 input and 10,000 output tokens = $0.021.
CALL = (100_000 * IN + 10_000 * OUT) / 1e6

AGENT = """
import json, os, sys, openai, runmeter
client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-test")
done, stopped = 0, None
with runmeter.run("nightly", owner=os.environ.get("OWNER", "ana"), task_id=os.environ.get("TASK")):
    for i in range(int(sys.argv[1])):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"step {i}"}])
            done += 1
        except runmeter.BudgetExceeded as exc:
            stopped = {"limit": exc.limit, "value": exc.value, "threshold": exc.threshold, "message": str(exc)}
            break
print(json.dumps({"done": done, "stopped": stopped}))
"""


def _config(tmp: Path, limits: str) -> None:
    (tmp / "runmeter.toml").write_text(
        f'[storage]\nclickhouse_url = "chdb://{tmp / "store"}"\nspool_dir = "{tmp / "spool"}"\n\n{limits}'
    )


def _agent(tmp: Path, sim: Simulator, calls: int, **env: str) -> dict:  # type: ignore[type-arg]
    (tmp / "agent.py").write_text(AGENT)
    full = {**os.environ, "SIM_URL": sim.openai_url, "RUNMETER_CONFIG": str(tmp / "runmeter.toml"),
            "OTEL_TRACES_EXPORTER": "clickhouse", "OTEL_METRICS_EXPORTER": "none", "OTEL_BSP_SCHEDULE_DELAY": "200", **env}
    proc = subprocess.run([str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "agent.py", str(calls)],
                          cwd=tmp, env=full, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _replies(sim: Simulator, n: int) -> None:
    for _ in range(n):
        sim.queue(Reply(input_tokens=100_000, output_tokens=10_000))


@pytest.mark.slow
def test_two_agent_processes_share_a_daily_owner_limit(tmp_path: Path) -> None:
    """Ana may spend $0.10 a day. The first process spends 3 calls ($0.063) and exits; the second,
    started after it, reads that from the store: its first call goes ($0.084), its second too (a
    call's cost is known only once it is made: $0.105 crosses the limit), and it is stopped
    before its third - the same rule as a run's max_cost_usd."""
    _config(tmp_path, '[limits]\nrefresh_s = 1\n\n[[limits.spend]]\nowner = "ana"\nmax_usd = 0.10\nper = "day"\n')
    with Simulator() as sim:
        _replies(sim, 10)
        first = _agent(tmp_path, sim, 3)
        assert first == {"done": 3, "stopped": None}
        second = _agent(tmp_path, sim, 5)
    # $0.063 stored + $0.021 = $0.084 < $0.10 goes; at $0.105 >= $0.10 the next call is refused.
    assert second["done"] == 2
    assert second["stopped"]["limit"] == "spend.owner=ana.day"
    assert second["stopped"]["threshold"] == 0.10
    assert second["stopped"]["value"] == pytest.approx(5 * CALL)
    assert "spend.owner=ana.day" in second["stopped"]["message"]
    with Store(f"chdb://{tmp_path / 'store'}").session() as c:
        spent = c.query("SELECT count(), sum(CostUsd) FROM runmeter_calls WHERE Owner = 'ana' AND Kind = 'llm'").result_rows[0]
    assert spent[0] == 5 and spent[1] == pytest.approx(5 * CALL)  # the refused call was never made
    # `runmeter limits`: the limit, what ana spent today, the headroom (negative: the last call crossed it).
    shown = subprocess.run([sys.executable, "-m", "runmeter.cli", "limits", "--json"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "RUNMETER_CONFIG": str(tmp_path / "runmeter.toml")}, timeout=120)
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    assert (row["Limit"], row["Value"], row["Per"], row["MaxUsd"], row["Action"]) == ("owner=ana", "ana", "day", 0.10, "stop")
    assert row["SpentUsd"] == pytest.approx(5 * CALL) and row["HeadroomUsd"] == pytest.approx(0.10 - 5 * CALL)


@pytest.mark.slow
def test_a_task_limit_holds_over_all_its_retries(tmp_path: Path) -> None:
    """Task t-42 may cost $0.05 in all (per = "total"): a retry of the task - another run, another
    process - is stopped once the task's earlier attempts spent it; another task is not."""
    _config(tmp_path, '[limits]\nrefresh_s = 1\n\n[[limits.spend]]\ntask_id = "t-42"\nmax_usd = 0.05\nper = "total"\n')
    with Simulator() as sim:
        _replies(sim, 10)
        assert _agent(tmp_path, sim, 2, TASK="t-42") == {"done": 2, "stopped": None}  # $0.042
        retry = _agent(tmp_path, sim, 2, TASK="t-42")
        other = _agent(tmp_path, sim, 2, TASK="t-43")
    assert retry["done"] == 1 and retry["stopped"]["limit"] == "spend.task_id=t-42.total"  # $0.063 >= $0.05 after one more
    assert other == {"done": 2, "stopped": None}


def _store_with_calls(tmp: Path, rows: list[tuple[str, str, str, str, float, int]]) -> Store:
    """A chDB store with these LLM calls: (owner, project, model, task, cost, seconds ago)."""
    store = Store(f"chdb://{tmp / 'store'}")
    now = time.time()
    with store.session() as c:
        c.insert("runmeter_calls", [
            [int((now - ago) * 1e9), f"{i:032x}", f"{i:016x}", f"run{i}", "svc", "llm", "chat", "openai", model,
             0, 0, 0, 0, 0, cost, 1, 0, 0, "test", 0.0, "", "", "", "", 0, 0, owner, project, "r", task]
            for i, (owner, project, model, task, cost, ago) in enumerate(rows, 1)
        ], column_names=[
            "Timestamp", "TraceId", "SpanId", "RunId", "ServiceName", "Kind", "Operation", "Provider", "Model",
            "InputTokens", "OutputTokens", "CacheReadTokens", "CacheWriteTokens", "ReasoningTokens",
            "CostUsd", "Priced", "Estimated", "Duplicate", "CostSource", "ExternalCostUsd",
            "ToolName", "ArgsHash", "Resource", "InputHash", "DurationNs", "Error", "Owner", "Project", "RunName", "TaskId",
        ])
    return store


def test_stored_spend_by_scope_and_period_from_the_store(tmp_path: Path) -> None:
    """The stored figure: this period's LLM calls of the scope's value (a dated model snapshot counts
    for its model), each value apart for "*"; yesterday's and last month's spend left out."""
    day = 86_400
    store = _store_with_calls(tmp_path, [
        ("ana", "checkout", "gpt-4o-mini-2024-07-18", "t1", 0.5, 60),
        ("ana", "checkout", "gpt-4o-mini", "t1", 0.25, 120),
        ("bob", "search", "gpt-4o", "t2", 2.0, 60),
        ("ana", "checkout", "gpt-4o", "t1", 7.0, 2 * day),  # before today (and maybe this week)
    ])
    settings = LimitSettings(spend=[
        LimitRule(owner="ana", max_usd=1), LimitRule(owner="*", max_usd=1), LimitRule(model="gpt-4o-mini", max_usd=1),
        LimitRule(project="checkout", max_usd=10, per="total"),
    ])
    with store.session() as c:
        figures = {(u.limit.name, u.value): u.spent for u in usage_now(settings, lambda sql, p: c.query(sql, parameters=p).result_rows)}
    assert figures[("spend.owner=ana.day", "ana")] == Decimal("0.75")
    assert figures[("spend.owner=*.day", "ana")] == Decimal("0.75") and figures[("spend.owner=*.day", "bob")] == Decimal("2.0")
    assert figures[("spend.model=gpt-4o-mini.day", "gpt-4o-mini")] == Decimal("0.75")
    assert figures[("spend.project=checkout.total", "checkout")] == Decimal("7.75")
    assert base_model("claude-3-5-haiku-20241022") == "claude-3-5-haiku" and base_model("gpt-4o") == "gpt-4o"


def test_own_spend_counts_at_once_and_warn_mode_goes_on(tmp_path: Path) -> None:
    store = _store_with_calls(tmp_path, [("ana", "p", "gpt-4o-mini", "t", 0.9, 10)])
    with store.session() as c:
        reader = stored_reader(lambda sql, p: c.query(sql, parameters=p).result_rows)
        limits = SpendLimits([SpendLimit("owner", "ana", 1.0)], reader, background=False)
        assert limits.refresh()
        keys = {"owner": "ana"}
        assert limits.check(keys) == []  # $0.90 of $1
        limits.record(keys, Decimal("0.2"))  # this process, not yet in the store
        with pytest.raises(BudgetExceeded) as err:
            limits.check(keys)
        assert err.value.limit == "spend.owner=ana.day" and err.value.value == pytest.approx(1.1)
        assert limits.check({"owner": "bob"}) == []  # another owner
        warn = SpendLimits([SpendLimit("owner", "ana", 1.0, action="warn")], reader, background=False)
        warn.refresh()
        warn.record(keys, Decimal("0.2"))
        first = warn.check(keys)
        assert [(b.limit, b.action) for b in first] == [("spend.owner=ana.day", "warn")]
        assert warn.check(keys) == []  # said once per limit, value and period


def test_a_spend_limit_is_summed_exactly_under_the_agents_decimal_context() -> None:
    """The check runs on the agent's thread before each call, whose code may have lowered the
    decimal precision: a stored $1.00001 and this process's $0.00002 are $1.00003, past a $1.00002
    limit (at a precision of 3 they would read $1.00, under it)."""
    import decimal

    limit = SpendLimit("owner", "ana", 1.00002)

    def reader(queries):  # type: ignore[no-untyped-def]
        return {(0, "ana"): Decimal("1.00001")}

    limits = SpendLimits([limit], reader, background=False)
    assert limits.refresh()
    keys = {"owner": "ana"}
    with decimal.localcontext(decimal.Context(prec=3)):
        assert limits.check(keys) == []
        limits.record(keys, Decimal("0.00002"))
        (usage,) = limits.usage(keys)
        assert usage.spent == Decimal("1.00003") and usage.headroom == Decimal("-0.00001")
        with pytest.raises(BudgetExceeded):
            limits.check(keys)


def test_a_store_that_cannot_be_read_follows_the_policy(caplog: pytest.LogCaptureFixture) -> None:
    def down(queries):  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError("connection refused")

    allow = SpendLimits([SpendLimit("owner", "ana", 1.0)], down, background=False)
    assert not allow.refresh()
    assert allow.check({"owner": "ana"}) == []  # allowed, and said once
    assert any("cannot read stored spend" in r.message for r in caplog.records)
    stop = SpendLimits([SpendLimit("owner", "ana", 1.0)], down, background=False, if_store_down="stop")
    stop.refresh()
    with pytest.raises(BudgetExceeded) as err:
        stop.check({"owner": "ana"})
    assert err.value.limit == "spend.owner=ana.day.store_down"
    assert stop.check({"owner": "bob"}) == []  # no limit on bob: nothing to check


def test_limit_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of owner"):
        LimitRule(owner="ana", project="p", max_usd=1)
    with pytest.raises(ValueError):
        LimitRule(owner="ana", max_usd=-1)
    with pytest.raises(ValueError):
        LimitRule(owner="ana", max_usd=1, per="year")  # type: ignore[arg-type]
    assert LimitRule(model="gpt-4o-mini-2024-07-18", max_usd=1).limit().value == "gpt-4o-mini"
