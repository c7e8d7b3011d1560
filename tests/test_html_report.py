"""The HTML report in a real headless Chromium: loads offline with no errors, shows the query figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from runmeter.cli import app
from runmeter.exporter import Store
from runmeter.reports import Filters, parse_since, run_query
from tests.report_store import build

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make test`
ARGS = ["--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_html_report_in_chromium(tmp_path: Path) -> None:
    url = build(tmp_path)
    html = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["--store", url, "report", "--since", "7d", "--html", str(html)], env={"RUNMETER_ABANDONED_AFTER_S": "60"})
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert "<script src" not in text and "http://" not in text and "https://" not in text  # self-contained, offline
    with Store(url).session() as c:
        by_model = run_query(c, "cost_per_accepted_run", Filters(since=parse_since("7d"), abandoned_after_s=60), group="model")
    total = sum(r["TotalCostUsd"] for r in by_model)
    accepted = sum(r["Accepted"] for r in by_model)

    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(html.as_uri())
        figures = {
            "total": page.get_attribute("[data-field='kpi.total_cost']", "data-value"),
            "runs": page.inner_text("[data-field='kpi.runs']"),
            "accepted": page.inner_text("[data-field='kpi.accepted']"),
            "cpa": page.get_attribute("[data-field='kpi.cost_per_accepted']", "data-value"),
        }
        cells = {
            el.get_attribute("data-field"): el.get_attribute("data-value")
            for el in page.query_selector_all("[data-field^='by_model.']")
        }
        charts = page.query_selector_all("svg rect")
        chart_total = sum(float(el.get_attribute("data-value")) for el in page.query_selector_all("rect[data-field^='spend.']"))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert problems == []
    assert all(r.startswith("file://") for r in requests)
    assert float(figures["total"]) == pytest.approx(total) == pytest.approx(1.83)  # 1.00 + 0.10 + 0.03 + 0.70
    assert chart_total == pytest.approx(1.83)  # the spend chart and the headline count every call alike
    assert int(figures["runs"]) == sum(r["Runs"] for r in by_model) == 7  # triage 3, summarize 1, looper 1, capped 2
    assert int(figures["accepted"]) == accepted == 2  # triage and capped; summarize's review rejected it
    assert float(figures["cpa"]) == pytest.approx(1.83 / 2)
    for i, row in enumerate(by_model):
        assert cells[f"by_model.{i}.Group"] == row["Group"]
        assert float(cells[f"by_model.{i}.TotalCostUsd"]) == pytest.approx(row["TotalCostUsd"])
    assert len(charts) > 5
