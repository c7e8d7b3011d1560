"""Reports on a fixture store whose figures are worked out by hand; the CLI through its real entry point."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runmeter.cli import app
from runmeter.exporter import Store
from runmeter.reports import Filters, QueryError, parse_since, plain, project_spend, run_query
from tests.report_store import build


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build(tmp_path_factory.mktemp("reports"))


def q(url: str, name: str, **kw: Any) -> list[dict[str, Any]]:
    with Store(url).session() as c:
        return run_query(c, name, Filters(since=parse_since("7d"), abandoned_after_s=60), **kw)


def test_cost_per_accepted_run_by_name(store_url: str) -> None:
    rows = {r["Group"]: r for r in q(store_url, "cost_per_accepted_run", group="name")}
    t = rows["triage"]
    # $0.30 + $0.50 + $0.20 = $1.00 over one accepted run
    assert (t["Runs"], t["TotalCostUsd"], t["Accepted"], t["Rejected"], t["Abandoned"]) == (3, 1.0, 1, 1, 1)
    assert t["CostPerAcceptedRun"] == 1.0
    assert t["MedianRunCostUsd"] == 0.3 and t["P90RunCostUsd"] == 0.5
    s = rows["summarize"]
    assert (s["Accepted"], s["Rejected"], s["CostPerAcceptedRun"]) == (0, 1, None)  # the late review wins
    c = rows["capped"]
    # $0.40 (stopped, failed) + $0.30 (accepted) = $0.70 per accepted run; mean LLM calls (1 + 3) / 2
    assert (c["TotalCostUsd"], c["CostPerAcceptedRun"], c["Failed"], c["MeanLlmCalls"]) == (0.7, 0.7, 1, 2.0)
    lo = rows["looper"]
    assert (lo["TotalCostUsd"], lo["MeanToolCalls"], lo["Abandoned"]) == (0.03, 4.0, 1)


def test_cost_per_accepted_by_owner_and_model(store_url: str) -> None:
    by_owner = {r["Group"]: r for r in q(store_url, "cost_per_accepted_run", group="owner")}
    assert by_owner["ana"]["TotalCostUsd"] == 1.0 and by_owner["cy"]["TotalCostUsd"] == 0.7
    assert by_owner["bo"]["TotalCostUsd"] == 0.13 and by_owner["bo"]["Accepted"] == 0
    by_model = {r["Group"]: r for r in q(store_url, "cost_per_accepted_run", group="model")}
    # gpt-5.5 runs: triage x3 ($1.00) + capped x2 ($0.70) = $1.70, 2 accepted
    assert by_model["gpt-5.5"]["TotalCostUsd"] == 1.7 and by_model["gpt-5.5"]["CostPerAcceptedRun"] == 0.85
    assert by_model["gpt-4o-mini"]["TotalCostUsd"] == 0.13
    assert q(store_url, "cost_per_accepted_run", group="provider")[0]["Group"] == "openai"


def test_filters_and_task_figures(store_url: str) -> None:
    with Store(store_url).session() as c:
        rows = run_query(c, "cost_per_accepted_run", Filters(since=parse_since("7d"), owner="ana", abandoned_after_s=60), group="none")
    (r,) = rows
    assert (r["Runs"], r["TotalCostUsd"], r["Tasks"], r["CostPerAcceptedTask"]) == (3, 1.0, 3, 1.0)


def test_spend_over_time_counts_unpriced_apart(store_url: str) -> None:
    rows = q(store_url, "spend_over_time", group="model", bucket="day")
    total = {}
    for r in rows:
        total[r["Group"]] = total.get(r["Group"], 0) + r["PricedUsd"]
    assert total == {"gpt-5.5": pytest.approx(1.7), "gpt-4o-mini": pytest.approx(0.13)}
    assert sum(r["UnpricedCalls"] for r in rows) == 0 and sum(r["Calls"] for r in rows) == 11  # 3 + 1 + 3 + 1 + 3


def test_expensive_runs_and_loops_and_budgets(store_url: str) -> None:
    top = q(store_url, "expensive_runs", limit=2)
    assert [r["CostUsd"] for r in top] == [0.5, 0.4]
    loops = {(r["Name"], r["Kind"]): r for r in q(store_url, "loops")}
    llm_loop = loops[("looper", "identical_llm_input")]
    assert (llm_loop["Count"], llm_loop["WastedUsd"], llm_loop["WasteIsEstimate"]) == (3, 0.02, 0)  # 2 repeats x $0.01
    tool_loop = loops[("looper", "identical_tool_call")]
    assert tool_loop["Count"] == 4 and tool_loop["WastedUsd"] == pytest.approx(0.03 * 3 / 4)
    (b,) = q(store_url, "budgets")
    # stopped after 1 call at $0.40; same-named runs that were not stopped made 3 calls: 0.40 x (3/1 - 1)
    assert (b["Limit"], b["Action"], b["Breaches"], b["SavedUsdEstimate"]) == ("max_cost_usd", "stop", 1, 0.8)


def test_bakeoff_and_projection(store_url: str) -> None:
    rows = q(store_url, "bakeoff", models=["gpt-5.5", "gpt-4o-mini"], small_below=1_001, large_above=10_000)
    cells = {(r["Model"], r["PromptSize"]): r for r in rows}
    assert cells[("gpt-5.5", "small")]["Calls"] == 7 and cells[("gpt-4o-mini", "large")]["Calls"] == 1  # triage 3 + capped 4
    assert cells[("gpt-4o-mini", "small")]["CostPerCallUsd"] == pytest.approx(0.01)
    proj = {p["PromptSize"]: p for p in project_spend(rows, "gpt-5.5", "gpt-4o-mini")}
    # 7 gpt-5.5 calls ($1.70) at gpt-4o-mini's $0.01 per small call
    assert proj["small"]["ActualUsd"] == pytest.approx(1.7) and proj["small"]["ProjectedUsd"] == pytest.approx(0.07)


def test_parse_since() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    assert parse_since("7d", now) == datetime(2026, 11, 15, 12, tzinfo=timezone.utc)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(QueryError, match="--since"):
        parse_since("last tuesday", now)


# --- the CLI ----------------------------------------------------------------------------

runner = CliRunner()


def cli(store_url: str, *args: str) -> Any:
    return runner.invoke(app, ["--store", store_url, *args], env={"RUNMETER_ABANDONED_AFTER_S": "60", "COLUMNS": "200"})


def test_cli_report_json_equals_the_query(store_url: str) -> None:
    res = cli(store_url, "report", "--group", "owner", "--since", "7d", "--json")
    assert res.exit_code == 0, res.output
    data = {r["Group"]: r for r in json.loads(res.stdout)}
    assert data["ana"]["CostPerAcceptedRun"] == 1.0 and data["bo"]["Rejected"] == 1


def test_cli_csv_and_table(store_url: str) -> None:
    res = cli(store_url, "runs", "--limit", "3", "--csv")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [float(r["CostUsd"]) for r in rows] == [0.5, 0.4, 0.3]
    table = cli(store_url, "report")
    assert table.exit_code == 0 and "triage" in table.stdout and "$/accepted run" in table.stdout


def test_cli_tables_are_not_folded_when_piped(store_url: str) -> None:
    """Out of a terminal (a pipe, a file, CI logs) a table keeps whole lines however narrow
    COLUMNS is, so run ids and numbers stay on one line and can be copied."""
    res = runner.invoke(app, ["--store", store_url, "runs", "--limit", "3"], env={"RUNMETER_ABANDONED_AFTER_S": "60", "COLUMNS": "40"})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    header = [line for line in lines if line.split()[:2] == ["Run", "Name"]]
    rows = [line for line in lines if line.split()[:1] in (["triage-2"], ["capped-20"], ["capped-21"])]
    assert len(header) == 1 and "Cost" in header[0] and "Started" in header[0]  # every column: no terminal to fit
    assert len(rows) == 3 and all(len(line.split()) >= 12 for line in rows)  # three runs, one whole line each


def test_cli_run_tree_and_bad_run_id(store_url: str) -> None:
    res = cli(store_url, "run", "looper-11", "--json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["run"]["LlmCalls"] == 3 and len(data["spans"]) == 8
    bad = cli(store_url, "run", "no-such-run")
    assert bad.exit_code == 1 and "no run with id 'no-such-run'" in bad.output


def test_cli_outcome_then_report(store_url: str, tmp_path: Path) -> None:
    url = build(tmp_path)
    assert cli(url, "outcome", "triage-3", "accepted", "--note", "reviewed").exit_code == 0
    data = {r["Group"]: r for r in json.loads(cli(url, "report", "--json").stdout)}
    # now two accepted: $1.00 / 2
    assert data["triage"]["CostPerAcceptedRun"] == 0.5
    assert cli(url, "outcome", "triage-3", "great").exit_code == 2
    assert "no run with id" in cli(url, "outcome", "nope", "accepted").output


def test_cli_bad_input_is_a_clear_error(store_url: str) -> None:
    res = cli(store_url, "report", "--since", "yesterday-ish")
    assert res.exit_code == 2 and "--since" in res.output
    quoted = cli(store_url, "report", "--owner", "ana' OR '1'='1", "--json")
    assert quoted.exit_code == 0 and json.loads(quoted.stdout) == []  # bound as a value, never spliced into SQL
    assert cli(store_url, "compare", "--model", "gpt-5.5").exit_code == 2
    assert "compare needs at least two" in cli(store_url, "compare", "--model", "gpt-5.5").output


def test_cli_empty_and_unreachable_store(tmp_path: Path) -> None:
    missing = cli(f"chdb://{tmp_path / 'missing'}", "report")
    assert missing.exit_code == 1 and "no store at" in missing.output and not (tmp_path / "missing").exists()
    assert cli(f"chdb://{tmp_path / 'empty'}", "db", "migrate").exit_code == 0
    empty = cli(f"chdb://{tmp_path / 'empty'}", "report")
    assert empty.exit_code == 1 and "no runs in the store" in empty.output
    down = cli("http://default:@127.0.0.1:9/default", "report")
    assert down.exit_code == 1 and "cannot reach ClickHouse" in down.output


def test_cli_compare_and_prices(store_url: str) -> None:
    res = cli(store_url, "compare", "--model", "gpt-5.5", "--model", "gpt-4o-mini", "--small-below", "1001", "--json")
    data = json.loads(res.stdout)
    assert {b["Model"] for b in data["buckets"]} == {"gpt-5.5", "gpt-4o-mini"}
    assert data["projection"][0]["From"] == "gpt-5.5"
    p = runner.invoke(app, ["prices", "claude-haiku-4-5"])
    assert p.exit_code == 0 and "genai-prices" in p.stdout and "$1/input MTok" in p.stdout
    assert runner.invoke(app, ["prices", "no-such-model-x"]).exit_code == 1


def test_cli_db_commands(store_url: str) -> None:
    info = cli(store_url, "db", "info")
    assert info.exit_code == 0 and "runmeter_runs:" in info.stdout
    ddl = runner.invoke(app, ["db", "migrate", "--cluster", "c1", "--print"])
    assert ddl.exit_code == 0 and "ON CLUSTER c1" in ddl.stdout
    assert runner.invoke(app, ["db", "migrate", "--cluster", "bad name", "--print"]).exit_code == 2


def test_python_outcome_api_latest_wins(tmp_path: Path) -> None:
    import runmeter
    from runmeter.exporter._exporter import open_writer

    url = build(tmp_path)
    runmeter.outcome("summarize-10", "accepted", "second review", store=url)
    open_writer(url).flush()
    data = {r["Group"]: r for r in json.loads(cli(url, "report", "--json").stdout)}
    assert data["summarize"]["Accepted"] == 1 and data["summarize"]["CostPerAcceptedRun"] == 0.1
    with pytest.raises(ValueError, match="outcome must be one of"):
        runmeter.outcome("summarize-10", "meh", store=url)


def test_spend_buckets_fit_the_range_of_the_data() -> None:
    from datetime import datetime, timedelta

    from runmeter.reports import pick_bucket

    t = datetime(2026, 11, 25, 12)
    assert pick_bucket(t, t + timedelta(seconds=38)) == "second"  # the demo: 38 columns, not one block
    assert pick_bucket(t, t + timedelta(minutes=5)) == "10s"  # 30 columns
    assert pick_bucket(t, t + timedelta(minutes=30)) == "minute"  # 180 ten-second columns would be too many
    assert pick_bucket(t, t + timedelta(days=2)) == "hour"
    assert pick_bucket(t, t + timedelta(days=30)) == "day"
    assert pick_bucket(t, t + timedelta(days=800)) == "week"
    assert pick_bucket(None, None) == "day"


def test_short_ids_are_unique_prefixes() -> None:
    from runmeter.reports import short_ids

    a = "5eed0000cafe" + "0" * 16 + "a001-0000000000000001"
    b = "5eed0000cafe" + "0" * 16 + "b002-0000000000000001"
    c = "0123456789abcdef0123456789abcdef-0000000000000001"
    short = short_ids([a, b, c, "triage-1"])
    assert short[c] == "0123456789"  # ten characters when no other id shares them
    assert short[a] == a[:30] and short[b] == b[:30]  # grown until the two differ
    assert short["triage-1"] == "triage-1"  # a short id given by the user is kept whole


def test_dollars_for_reading_never_in_scientific_notation() -> None:
    from runmeter.views import duration, exact, usd

    assert [usd(v) for v in (0, 1234.567, 0.5, 0.0222, 0.000075, -0.3, None, float("nan"))] == \
        ["$0", "$1,234.57", "$0.50", "$0.022", "$0.000075", "-$0.30", "—", "—"]
    assert exact(7.5e-05) == "0.000075" and exact(1e-12) == "0.000000000001" and exact(0.0) == "0"
    assert duration(0.0487) == "49 ms" and duration(3.21) == "3.2 s"


def test_a_sub_agent_loop_is_in_the_loops_report(tmp_path: Path) -> None:
    """A loop inside a sub-run (a sub-agent) is reported under the sub-run, with the top run's window."""
    from tests.report_store import write
    from tests.spans import make_span, run_root

    url = f"chdb://{tmp_path / 'store'}"
    spans = [run_root("orchestrator", 1, trace_id=0x51, end_ms=900, attrs={"runmeter.run.id": "orch-1"}),
             run_root("researcher", 2, 1, trace_id=0x51, start_ms=10, end_ms=800, attrs={"runmeter.run.id": "research-1"})]
    spans += [make_span("execute_tool search", 10 + i, 2, trace_id=0x51, start_ms=20 + i * 10,
                        attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "runmeter.tool.args_hash": "q"})
              for i in range(3)]
    write(url, tmp_path / "spool", spans)
    with Store(url).session() as c:
        rows = run_query(c, "loops", Filters(since=parse_since("7d")))
    assert [(r["RunId"], r["Name"], r["Kind"], r["Count"]) for r in rows] == [("research-1", "researcher", "identical_tool_call", 3)]


def test_json_output_has_null_for_a_figure_that_is_not_finite() -> None:
    """JSON has no NaN or Infinity (a browser refuses the whole document for one): a stored figure
    that is not finite - written before such costs were refused, or a sum past Float64 - is null."""
    rows = {"cost": float("inf"), "by_model": {"m": Decimal("NaN"), "n": Decimal("0.1")}, "trend": [1.5, float("-inf")], "calls": 3}
    text = json.dumps(plain(rows), allow_nan=False)  # raises on NaN or Infinity
    assert json.loads(text) == {"cost": None, "by_model": {"m": None, "n": 0.1}, "trend": [1.5, None], "calls": 3}
