"""Every Grafana panel's SQL and alert rule, with the data source's macros expanded, on the fixture store."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml

from runmeter.exporter import Store
from runmeter.grafana import ALERTS, DASHBOARDS, OUT_DIR, outputs

ALERTS_FILE = OUT_DIR / "provisioning" / "alerting" / "alerts.yaml"
from runmeter.reports import Filters, run_query
from tests.report_store import build
from tests.spans import BASE_NS

SINCE = datetime.now(timezone.utc) - timedelta(days=7)
UNTIL = datetime.now(timezone.utc) + timedelta(days=1)
VARIABLES = {"owner": "", "project": "", "model": "", "abandoned_after_s": "60", "models": ["gpt-5.5", "gpt-4o-mini"],
             "small_below": "1001", "large_above": "10000", "run_id": "looper-11"}


def expand(sql: str, variables: dict[str, Any] = VARIABLES) -> str:
    """What Grafana and the ClickHouse data source do to a panel's SQL before sending it."""
    sql = sql.replace("$__fromTime", f"fromUnixTimestamp64Milli({int(SINCE.timestamp() * 1000)})")
    sql = sql.replace("$__toTime", f"fromUnixTimestamp64Milli({int(UNTIL.timestamp() * 1000)})")

    def var(m: re.Match[str]) -> str:
        name, fmt = m.group(1), m.group(2)
        value = variables[name]
        if fmt == "sqlstring":
            return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in value)
        return str(value)

    return re.sub(r"\$\{([a-z_]+)(?::([a-z]+))?\}", var, sql)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build(tmp_path_factory.mktemp("grafana"))


def test_generated_dashboards_are_up_to_date() -> None:
    for path, text in outputs().items():
        assert path.read_text() == text, f"{path} is stale: run python -m runmeter.grafana"


def test_every_panel_equals_the_named_query(store_url: str) -> None:
    filters = Filters(since=SINCE, until=UNTIL, abandoned_after_s=60)
    checked = 0
    with Store(store_url).session() as c:
        for uid, (_title, panels) in DASHBOARDS.items():
            dashboard = json.loads((OUT_DIR / "dashboards" / f"{uid}.json").read_text())
            for panel, (_t, _k, query, fixed) in zip(dashboard["panels"], panels):
                sql = expand(panel["targets"][0]["rawSql"])
                got = c.query(sql)
                rows = [dict(zip(got.column_names, r)) for r in got.result_rows]
                extra = {k: (v.strip("'") if v.startswith("'") else int(v)) for k, v in fixed.items()}
                if query == "bakeoff":
                    extra.update(models=VARIABLES["models"], small_below=1001, large_above=10000)
                assert rows == run_query(c, query, filters, **extra), f"{uid}: {panel['title']}"
                assert panel["datasource"]["uid"] == "runmeter-clickhouse"
                checked += 1
    assert checked == sum(len(p) for _, p in DASHBOARDS.values())


def test_cost_per_accepted_panel_shows_the_hand_computed_figure(store_url: str) -> None:
    dashboard = json.loads((OUT_DIR / "dashboards" / "overview.json").read_text())
    panel = next(p for p in dashboard["panels"] if p["title"].startswith("Outcomes"))
    with Store(store_url).session() as c:
        res = c.query(expand(panel["targets"][0]["rawSql"]))
    rows = {r[0]: dict(zip(res.column_names, r)) for r in res.result_rows}
    assert rows["triage"]["CostPerAcceptedRun"] == 1.0


def _at(sql: str, now_ns: int) -> str:
    return sql.replace("now64(9)", f"fromUnixTimestamp64Nano({now_ns})")


@pytest.mark.parametrize(("uid", "now_offset_s", "expected"), [
    ("runmeter-loops", 600, 1),            # looper, 10 minutes after the fixture's runs
    ("runmeter-long-runs", 600, 0),
    ("runmeter-budget-breaches", 600, 1),  # capped, stopped by max_cost_usd
    ("runmeter-abandoned", 36 * 3600, 2),  # triage-3 and looper never got an outcome
])
def test_alert_rules(store_url: str, uid: str, now_offset_s: int, expected: int) -> None:
    rules = {r["uid"]: r for r in yaml.safe_load(ALERTS_FILE.read_text())["groups"][0]["rules"]}
    sql = rules[uid]["data"][0]["model"]["rawSql"]
    assert sql == next(a[2] for a in ALERTS if a[0] == uid)
    with Store(store_url).session() as c:
        value = c.query(_at(sql, BASE_NS + now_offset_s * 1_000_000_000)).result_rows[0][0]
    assert value == expected


def test_alert_rules_follow_the_alerts_settings(store_url: str) -> None:
    """With [alerts] configured, Grafana's rules are those kinds with those thresholds: runs over
    0.4 s (every run of the fixture lasts 0.5 s) and over 0.6 s (none), the unpriced share over 10 %."""
    from runmeter.alerts import AlertRule
    from runmeter.grafana import alerts_from

    rules = alerts_from([AlertRule(kind="long_run", threshold_s=0.4), AlertRule(kind="unpriced_share", threshold_pct=10),
                         AlertRule(kind="spend_limit")])
    assert [r[0] for r in rules] == ["runmeter-long-runs", "runmeter-unpriced-share"]  # spend limits: runmeter's own delivery
    (uid, title, sql, threshold), (_, _, share_sql, share_threshold) = rules
    assert "0.4 s" in title and threshold == 0 and share_threshold == 10
    longer = alerts_from([AlertRule(kind="long_run", threshold_s=0.6)])[0][2]
    with Store(store_url).session() as c:
        runs = c.query("SELECT count() FROM runmeter_runs_current").result_rows[0][0]
        long_runs = c.query(_at(sql, BASE_NS + 600 * 1_000_000_000)).result_rows[0][0]
        none = c.query(_at(longer, BASE_NS + 600 * 1_000_000_000)).result_rows[0][0]
        calls, unpriced = c.query("SELECT count(), countIf(Priced = 0) FROM runmeter_calls WHERE Kind = 'llm' AND Duplicate = 0").result_rows[0]
        share = c.query(_at(share_sql, BASE_NS + 60 * 1_000_000_000).replace("INTERVAL 15 MINUTE", "INTERVAL 10 YEAR")).result_rows[0][0]
    assert long_runs == runs > 0 and none == 0
    assert share == pytest.approx(100 * unpriced / calls)
