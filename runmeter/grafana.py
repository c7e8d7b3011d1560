"""Grafana dashboards, data source and alert rules, generated from the same named queries as the CLI.

``runmeter grafana export DIR`` writes them as Grafana provisioning files anywhere (from an
installed wheel too); in a source checkout, ``python -m runmeter.grafana`` regenerates
``deploy/grafana/`` and the Helm chart's copies of the dashboards. Each panel's SQL is a
query from ``runmeter/queries/`` with its ClickHouse parameters turned into
the ClickHouse data source's macros and dashboard variables
(``{since:DateTime64(9)}`` -> ``$__fromTime``, ``{owner:String}`` ->
``${owner:sqlstring}``...), so a figure is the same in the terminal, the HTML
report and Grafana. A test runs every panel's SQL with the macros expanded.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from runmeter.reports import load_query

__all__ = ["ALERTS", "DASHBOARDS", "alerts_from", "export", "grafana_sql", "outputs"]

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "deploy" / "grafana"
CHART_DASHBOARDS = OUT_DIR.parent / "helm" / "runmeter" / "dashboards"
CONTAINER_DASHBOARDS = "/var/lib/grafana/dashboards/runmeter"  # where the Helm chart mounts them
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "runmeter-clickhouse"}
_PARAM = re.compile(r"\{([a-z_]+):([A-Za-z0-9(), ]+)\}")

# Parameters every dashboard maps the same way.
_COMMON = {
    "since": "$__fromTime",
    "until": "$__toTime",
    "owner": "${owner:sqlstring}",
    "project": "${project:sqlstring}",
    "model": "${model:sqlstring}",
    "run_name": "''",
    "abandoned_after_s": "${abandoned_after_s}",
    "models": "[${models:singlequote}]",
    "small_below": "${small_below}",
    "large_above": "${large_above}",
    "run_id": "${run_id:sqlstring}",
}


def grafana_sql(query: str, **fixed: str) -> str:
    """A named query with its parameters as Grafana macros/variables (``fixed`` wins)."""
    mapping = {**_COMMON, **fixed}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in mapping:
            raise KeyError(f"query {query}: no Grafana mapping for parameter {name!r}")
        return mapping[name]

    return _PARAM.sub(sub, load_query(query))


def _panel(pid: int, title: str, kind: str, sql: str, x: int, y: int, w: int = 12, h: int = 8, fmt: int = 1) -> dict[str, Any]:
    return {
        "id": pid, "title": title, "type": kind, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [{"refId": "A", "datasource": DATASOURCE, "editorType": "sql", "format": fmt, "queryType": "table", "rawSql": sql}],
    }


def _var(name: str, query: str | None = None, default: str = "", multi: bool = False) -> dict[str, Any]:
    if query is None:
        return {"name": name, "type": "textbox", "query": default, "current": {"value": default, "text": default}, "label": name}
    return {"name": name, "type": "query", "datasource": DATASOURCE, "query": query, "multi": multi, "includeAll": False,
            "refresh": 2, "current": {}, "label": name}


_VARS = [
    _var("owner"), _var("project"), _var("model"), _var("abandoned_after_s", default="86400"),
]

# dashboard file -> (title, panels as (title, type, query, fixed params))
DASHBOARDS: dict[str, tuple[str, list[tuple[str, str, str, dict[str, str]]]]] = {
    "overview": ("runmeter — overview", [
        ("Spend per day by model", "barchart", "spend_over_time", {"group": "'model'", "bucket": "'day'"}),
        ("Cost per accepted run, by model", "table", "cost_per_accepted_run", {"group": "'model'"}),
        ("Outcomes and cost per accepted run, by run name", "table", "cost_per_accepted_run", {"group": "'name'"}),
        ("Spend by owner", "table", "cost_per_accepted_run", {"group": "'owner'"}),
    ]),
    "runs": ("runmeter — runs", [
        ("Most expensive runs", "table", "expensive_runs", {"limit": "50"}),
        ("Spend by project", "table", "cost_per_accepted_run", {"group": "'project'"}),
        ("Spend by provider", "table", "cost_per_accepted_run", {"group": "'provider'"}),
    ]),
    "loops-budgets": ("runmeter — loops & budgets", [
        ("Loop signals and wasted spend", "table", "loops", {}),
        ("Budget breaches", "table", "budgets", {}),
    ]),
    "bakeoff": ("runmeter — model bake-off", [
        ("Calls, tokens and cost by prompt size", "table", "bakeoff", {}),
    ]),
}

# Alert rules: (uid, title, SQL returning one number, threshold above which it fires, minutes window)
ALERTS: list[tuple[str, str, str, float]] = [
    ("runmeter-loops", "Runs stuck in loops",
     "SELECT count() AS value FROM runmeter_runs_current WHERE length(LoopSignals.Kind) > 0 AND EndTime > now64(9) - INTERVAL 15 MINUTE", 0),
    ("runmeter-long-runs", "Long runs (over 30 minutes)",
     "SELECT count() AS value FROM runmeter_runs_current WHERE dateDiff('second', StartTime, EndTime) > 1800 AND EndTime > now64(9) - INTERVAL 15 MINUTE", 0),
    ("runmeter-abandoned", "Runs abandoned (no outcome a day after they ended)",
     "SELECT count() AS value FROM runmeter_runs_current AS r LEFT JOIN runmeter_run_outcome AS o ON o.RunId = r.RunId "
     "WHERE r.ParentRunId = '' AND ifNull(o.Outcome, '') = '' AND r.EndTime BETWEEN now64(9) - INTERVAL 2 DAY AND now64(9) - INTERVAL 1 DAY", 0),
    ("runmeter-budget-breaches", "Budget breaches",
     "SELECT count() AS value FROM runmeter_runs_current ARRAY JOIN Breaches.Limit AS lim WHERE EndTime > now64(9) - INTERVAL 15 MINUTE", 0),
]


def _dashboard(uid: str, title: str, panels: list[tuple[str, str, str, dict[str, str]]]) -> dict[str, Any]:
    out = []
    for i, (ptitle, kind, query, fixed) in enumerate(panels):
        out.append(_panel(i + 1, ptitle, kind, grafana_sql(query, **fixed), x=(i % 2) * 12, y=(i // 2) * 8))
    variables = list(_VARS)
    if uid == "bakeoff":
        variables += [
            _var("models", "SELECT DISTINCT Model FROM runmeter_calls WHERE Kind = 'llm' ORDER BY Model", multi=True),
            _var("small_below", default="1000"), _var("large_above", default="10000"),
        ]
    return {
        "uid": f"runmeter-{uid}", "title": title, "tags": ["runmeter", "llm", "cost"], "schemaVersion": 39, "version": 1,
        "time": {"from": "now-7d", "to": "now"}, "refresh": "1m", "editable": True,
        "templating": {"list": variables}, "panels": out,
    }


def alerts_from(rules: Any) -> list[tuple[str, str, str, float]]:
    """Grafana alert rules for ``[alerts]``'s rules (the same kinds and thresholds runmeter's own
    delivery uses); without any, the defaults in :data:`ALERTS`. A spend_limit rule has no Grafana
    twin (a limit per owner or project is not one number): runmeter delivers those itself."""
    if not rules:
        return ALERTS
    defaults = {uid.removeprefix("runmeter-"): (uid, title, sql, threshold) for uid, title, sql, threshold in ALERTS}
    out = []
    for r in rules:
        if r.kind == "loop":
            out.append(defaults["loops"])
        elif r.kind == "budget_breach":
            out.append(defaults["budget-breaches"])
        elif r.kind == "abandoned":
            out.append(defaults["abandoned"])
        elif r.kind == "long_run":
            ms = int(r.threshold_s * 1000)
            out.append(("runmeter-long-runs", f"Long runs (over {r.threshold_s:g} s)",
                        "SELECT count() AS value FROM runmeter_runs_current "
                        f"WHERE dateDiff('millisecond', StartTime, EndTime) > {ms} AND EndTime > now64(9) - INTERVAL 15 MINUTE", 0))
        elif r.kind == "unpriced_share":
            out.append(("runmeter-unpriced-share", f"Unpriced LLM calls (over {r.threshold_pct:g} %)",
                        "SELECT 100 * countIf(Priced = 0) / greatest(count(), 1) AS value FROM runmeter_calls "
                        "WHERE Kind = 'llm' AND Duplicate = 0 AND Timestamp > now64(9) - INTERVAL 15 MINUTE", float(r.threshold_pct)))
    return out


def _alerts(definitions: list[tuple[str, str, str, float]] = ALERTS) -> dict[str, Any]:
    rules = []
    for uid, title, sql, threshold in definitions:
        rules.append({
            "uid": uid, "title": title, "condition": "C", "for": "0m", "noDataState": "OK", "execErrState": "Error",
            "labels": {"team": "platform", "source": "runmeter"},
            "annotations": {"summary": title},
            "data": [
                {"refId": "A", "datasourceUid": DATASOURCE["uid"], "relativeTimeRange": {"from": 900, "to": 0},
                 "model": {"refId": "A", "editorType": "sql", "format": 1, "queryType": "table", "rawSql": sql}},
                {"refId": "C", "datasourceUid": "__expr__",
                 "model": {"refId": "C", "type": "threshold", "expression": "A", "conditions": [{"evaluator": {"type": "gt", "params": [threshold]}}]}},
            ],
        })
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": "runmeter", "folder": "runmeter", "interval": "1m", "rules": rules}]}


def _datasource(clickhouse_host: str) -> dict[str, Any]:
    return {"apiVersion": 1, "datasources": [{
        "name": "runmeter ClickHouse", "uid": DATASOURCE["uid"], "type": DATASOURCE["type"],
        "jsonData": {
            "host": clickhouse_host, "port": 8123, "protocol": "http", "username": "${RUNMETER_CLICKHOUSE_USER}",
            "defaultDatabase": "default",
            # Grafana's trace view reads otel_traces natively (the Collector exporter's columns).
            "traces": {"defaultTable": "otel_traces", "otelEnabled": True},
        },
        "secureJsonData": {"password": "${RUNMETER_CLICKHOUSE_PASSWORD}"},
    }]}


def _provider(dashboards: str) -> dict[str, Any]:
    return {"apiVersion": 1, "providers": [{
        "name": "runmeter", "folder": "runmeter", "type": "file", "allowUiUpdates": False, "options": {"path": dashboards},
    }]}


_HEADER = "# Generated by runmeter (`runmeter grafana export`, `python -m runmeter.grafana`); do not edit by hand.\n"


def outputs(out_dir: Path = OUT_DIR, dashboards_path: str = CONTAINER_DASHBOARDS, chart_dir: Path | None = CHART_DASHBOARDS,
            clickhouse_host: str = "${RUNMETER_CLICKHOUSE_HOST}", alert_rules: Any = None) -> dict[Path, str]:
    """Every file, by path: ``dashboards/*.json`` and ``provisioning/{datasources,dashboards,alerting}``
    under ``out_dir`` (the provider points Grafana at ``dashboards_path``), and the chart's copies."""
    files: dict[Path, str] = {}
    for uid, (title, panels) in DASHBOARDS.items():
        text = json.dumps(_dashboard(uid, title, panels), indent=2) + "\n"
        files[out_dir / "dashboards" / f"{uid}.json"] = text
        if chart_dir is not None:
            files[chart_dir / f"{uid}.json"] = text  # the Helm chart ships them as ConfigMaps
    prov = out_dir / "provisioning"
    files[prov / "alerting" / "alerts.yaml"] = _HEADER + yaml.safe_dump(_alerts(alerts_from(alert_rules)), sort_keys=False, width=200)
    name = f"{DATASOURCE['uid'].split('-')[0]}.yaml"  # runmeter.yaml
    files[prov / "datasources" / name] = _HEADER + yaml.safe_dump(_datasource(clickhouse_host), sort_keys=False, width=200)
    files[prov / "dashboards" / name] = _HEADER + yaml.safe_dump(_provider(dashboards_path), sort_keys=False, width=200)
    return files


def export(directory: Path, clickhouse_host: str = "${RUNMETER_CLICKHOUSE_HOST}", alert_rules: Any = None) -> list[Path]:
    """Write the provisioning files under ``directory`` (for an installed runmeter); the paths written.
    ``alert_rules``: ``[alerts]``'s rules, for Grafana alert rules with the same kinds and thresholds."""
    directory = Path(directory).resolve()
    files = outputs(directory, str(directory / "dashboards"), None, clickhouse_host, alert_rules)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runmeter.grafana", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated files are stale")
    args = parser.parse_args(argv)
    if not (ROOT / "pyproject.toml").is_file():
        print("python -m runmeter.grafana regenerates deploy/grafana/ in a source checkout; "
              "here, use: runmeter grafana export DIR", file=sys.stderr)
        return 2
    stale = [p for p, text in outputs().items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"stale: {p}", file=sys.stderr)
        return 1 if stale else 0
    for p, text in outputs().items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
