"""`runmeter ui` in a real headless Chromium, served by the real command over the fixture store.

The fixture's figures are worked out by hand in tests/report_store.py: triage $0.30 accepted,
$0.50 rejected, $0.20 abandoned; summarize $0.10 accepted then rejected by a review; looper
3 x $0.01 with identical inputs and 4 identical searches, abandoned; capped $0.40 stopped by
its budget (failed) and $0.30 accepted. Total $1.83, 7 runs, 2 accepted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from runmeter.exporter import Store
from runmeter.reports import Filters, parse_since, run_query
from tests.report_store import build, write
from tests.spans import llm, run_root

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make test`
ARGS = ["--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TRACE_URL = "http://127.0.0.1:16686/trace/{trace_id}"


class Served:
    def __init__(self, url: str, store: str, tmp: Path, proc: subprocess.Popen[str]) -> None:
        self.url, self.store, self.tmp, self.proc = url, store, tmp, proc


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("ui")
    store = build(tmp)
    # Every owner may spend $1 in all: the overview shows each one's spend and headroom.
    (tmp / "runmeter.toml").write_text('[[limits.spend]]\nowner = "*"\nmax_usd = 1\nper = "total"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNMETER_", "OTEL_"))}
    env.update(RUNMETER_ABANDONED_AFTER_S="60", RUNMETER_TRACE_URL=TRACE_URL)
    log = tmp / "ui.log"
    with open(log, "w") as errors:
        proc = subprocess.Popen([sys.executable, "-m", "runmeter.cli", "--store", store, "ui", "--port", "0", "--poll", "1"],
                                cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://\S+/)", line)
        assert match, line + log.read_text()
        yield Served(match.group(1), store, tmp, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    foreign: list[str] = []
    pg.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    pg.on("request", lambda r: None if r.url.startswith(served.url) else foreign.append(r.url))
    yield pg
    pg.close()
    assert problems == [], problems
    assert foreign == [], foreign  # works offline: nothing but the local server is asked for anything


def _values(page: Page, prefix: str) -> dict[str, str]:
    return {el.get_attribute("data-field") or "": el.get_attribute("data-value") or ""
            for el in page.query_selector_all(f"[data-field^='{prefix}']")}


def _run_ids(page: Page) -> list[str]:
    return [el.get_attribute("title") or "" for el in page.query_selector_all("table[data-table='runs'] td[data-field$='.RunId'] .id")]


def test_listens_on_loopback_by_default(served: Served) -> None:
    assert served.url.startswith("http://127.0.0.1:")


def test_overview_figures_equal_the_queries(page: Page, served: Served) -> None:
    page.goto(served.url)
    with Store(served.store).session() as c:
        (totals,) = run_query(c, "cost_per_accepted_run", Filters(since=parse_since("30d"), abandoned_after_s=60), group="none")
    kpi = _values(page, "kpi.")
    assert float(kpi["kpi.total_cost"]) == pytest.approx(totals["TotalCostUsd"]) == pytest.approx(1.83)
    assert int(kpi["kpi.runs"]) == totals["Runs"] == 7
    assert int(kpi["kpi.accepted"]) == totals["Accepted"] == 2
    assert float(kpi["kpi.cost_per_accepted"]) == pytest.approx(1.83 / 2)
    # Each headline has its definition one hover away.
    assert "÷ accepted runs" in (page.get_attribute(".kpi:nth-child(4) abbr", "title") or "")
    spend = sum(float(el.get_attribute("data-value") or 0) for el in page.query_selector_all("rect[data-field^='spend.']"))
    assert spend == pytest.approx(1.83)  # the chart's columns add up to the headline
    outcomes = _values(page, "outcomes.")
    assert outcomes["outcomes.triage.accepted"] == "1" and outcomes["outcomes.triage.rejected"] == "1"
    assert outcomes["outcomes.capped.failed"] == "1"
    events = {el.get_attribute("data-value") for el in page.query_selector_all("[data-field^='events.']")}
    assert {"loop", "budget_stop", "abandoned"} <= events
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-overview.png"), full_page=True)


def test_overview_shows_each_spend_limit_with_its_headroom(page: Page, served: Served) -> None:
    page.goto(served.url)
    cells = _values(page, "limits.")
    spent = {k.split(".")[1]: float(v) for k, v in cells.items() if k.endswith(".SpentUsd")}
    headroom = {k.split(".")[1]: float(v) for k, v in cells.items() if k.endswith(".HeadroomUsd")}
    assert sum(spent.values()) == pytest.approx(1.83)  # every owner's LLM spend: the headline's total
    assert all(headroom[i] == pytest.approx(1 - spent[i]) for i in spent)
    with urllib.request.urlopen(served.url + "?format=json") as r:
        limits = json.loads(r.read())["limits"]
    assert {row["Limit"] for row in limits} == {"owner=*"} and len(limits) == len(spent) >= 2


def test_runs_filters_sort_and_pages_change_the_list(page: Page, served: Served) -> None:
    page.goto(served.url + "runs")
    assert page.inner_text("[data-field='runs.total']") == "7 runs"
    costs = sorted(float(el.get_attribute("data-value") or "nan") for el in page.query_selector_all("td[data-field$='.CostUsd']"))
    assert costs == pytest.approx([0.03, 0.10, 0.20, 0.30, 0.30, 0.40, 0.50])
    page.select_option("select[name='outcome']", "accepted")
    page.click("form.filters button[type='submit']")
    page.wait_for_url(re.compile(r"outcome=accepted"))
    assert sorted(_run_ids(page)) == ["capped-21", "triage-1"]
    page.select_option("select[name='outcome']", "")
    page.check("input[name='loops']")
    page.click("form.filters button[type='submit']")
    page.wait_for_url(re.compile(r"loops=1"))
    assert _run_ids(page) == ["looper-11"]
    assert "loop ×2" in page.inner_text("table[data-table='runs']")  # identical inputs and identical searches
    page.uncheck("input[name='loops']")
    page.fill("input[name='min_cost']", "0.35")
    page.click("form.filters button[type='submit']")
    page.wait_for_url(re.compile(r"min_cost=0.35"))
    assert sorted(_run_ids(page)) == ["capped-20", "triage-2"]  # $0.40 and $0.50
    assert "budget stop" in page.inner_text("table[data-table='runs']")
    # Sorted on the server by a header click: cost, most first, then least first.
    page.goto(served.url + "runs")
    page.click("th a:has-text('Cost')")
    assert _run_ids(page)[0] == "triage-2"
    page.click("th a:has-text('Cost')")
    assert _run_ids(page)[0] == "looper-11"
    # Paged on the server: three pages of three hold the seven runs once each, in cost order.
    seen: list[str] = []
    page.goto(served.url + "runs?sort=CostUsd&dir=desc&size=3")
    while True:
        seen += _run_ids(page)
        nxt = page.query_selector("a[rel='next']")
        if nxt is None:
            break
        nxt.click()
        page.wait_for_load_state()
    # $0.50, $0.40, then the two $0.30 runs by id, $0.20, $0.10, $0.03
    assert seen == ["triage-2", "capped-20", "capped-21", "triage-1", "triage-3", "summarize-10", "looper-11"]
    page.goto(served.url + "runs")
    page.screenshot(path=str(ARTIFACTS / "ui-runs.png"), full_page=True)


def test_a_click_on_a_run_shows_its_tree(page: Page, served: Served) -> None:
    page.goto(served.url + "runs?loops=1")
    page.click("td[data-field$='.RunId'] a")
    page.wait_for_url(re.compile(r"/runs/looper-11$"))
    kinds = [el.get_attribute("data-kind") for el in page.query_selector_all("li[data-span]")]
    assert kinds.count("run") == 1 and kinds.count("llm") == 3 and kinds.count("tool") == 4
    llm_costs = [float(el.get_attribute("data-value") or "nan") for el in page.query_selector_all("li[data-kind='llm'] [data-field$='.cost']")]
    assert llm_costs == pytest.approx([0.01, 0.01, 0.01])
    run_node = page.query_selector("li[data-kind='run'] [data-field$='.cost']")
    assert run_node is not None and float(run_node.get_attribute("data-value") or 0) == pytest.approx(0.03)
    assert float(page.get_attribute("[data-field='run.cost']", "data-value") or 0) == pytest.approx(0.03)
    assert page.get_attribute("[data-field='run.tool_calls']", "data-value") == "4"
    # The loop signals sit on the run's node, and each repeated call is marked.
    signals = page.inner_text("li[data-kind='run'] > details > summary")
    assert "identical_llm_input" in signals and "identical_tool_call" in signals
    assert len(page.query_selector_all("li[data-kind='llm'] .badge.loop")) == 3
    assert len(page.query_selector_all("li[data-kind='tool'] .badge.loop")) == 4
    with Store(served.store).session() as c:
        trace_id = run_query(c, "run_summary", run_id="looper-11", abandoned_after_s=60)[0]["TraceId"]
    assert page.get_attribute("a:has-text('open the trace')", "href") == TRACE_URL.replace("{trace_id}", trace_id)
    page.screenshot(path=str(ARTIFACTS / "ui-run.png"), full_page=True)
    # The outcome history: the run said accepted, a later review said rejected (the one that counts).
    page.goto(served.url + "runs/summarize-10")
    history = [(el.inner_text()) for el in page.query_selector_all("td[data-field$='.Outcome']")]
    assert history == ["accepted", "rejected"]
    assert page.get_attribute("[data-field='run.outcome']", "data-value") == "rejected"


def test_a_short_id_redirects_to_its_run(served: Served) -> None:
    with urllib.request.urlopen(served.url + "runs/loope") as r:
        assert r.geturl().endswith("/runs/looper-11")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(served.url + "runs/capped-2")  # capped-20 and capped-21
    assert exc.value.code == 400 and "ambiguous" in exc.value.read().decode()


def test_bad_filters_get_a_clear_page(served: Served) -> None:
    for query, words in (("runs?sort=Password", "sort by 'Password'"), ("runs?min_cost=abc", "minimum cost 'abc'"),
                         ("runs?outcome=%27%3B%20DROP", "outcome"), ("?since=yesterday", "--since 'yesterday'")):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(served.url + query)
        assert exc.value.code == 400
        assert words in exc.value.read().decode().replace("&#x27;", "'")


def test_compare_shows_the_bakeoff_of_the_queries(page: Page, served: Served) -> None:
    page.goto(served.url + "compare")
    cells = _values(page, "bakeoff.")
    with Store(served.store).session() as c:
        rows = run_query(c, "bakeoff", Filters(since=parse_since("30d")), models=["gpt-5.5", "gpt-4o-mini"], small_below=1000, large_above=10000)
    assert len(rows) == 3  # gpt-4o-mini large (summarize) and medium (looper), gpt-5.5 medium
    for i, r in enumerate(rows):
        assert cells[f"bakeoff.{i}.Model"] == r["Model"]
        assert float(cells[f"bakeoff.{i}.CostPerCallUsd"]) == pytest.approx(r["CostPerCallUsd"])
    by = {(r["Model"], r["PromptSize"]): r for r in rows}
    assert by[("gpt-5.5", "medium")]["CostPerCallUsd"] == pytest.approx(1.70 / 7)  # 0.3+0.5+0.2+0.4+3x0.1 over 7 calls
    assert by[("gpt-5.5", "medium")]["AcceptanceRate"] == pytest.approx(2 / 5)  # triage-1 and capped-21 of 5 runs
    projection = _values(page, "projection.")
    assert float(projection["projection.0.ProjectedUsd"]) == pytest.approx(7 * 0.01)  # 7 calls at gpt-4o-mini's medium $0.01
    page.screenshot(path=str(ARTIFACTS / "ui-compare.png"), full_page=True)


def test_new_runs_appear_without_a_reload(page: Page, served: Served) -> None:
    page.goto(served.url + "runs?sort=StartTime&dir=desc")
    page.evaluate("window.__kept = true")  # gone if the page reloads
    later = 3_000_000  # 50 minutes after the fixture's runs (tests/spans.py times are offsets from an hour ago)
    late = [run_root("late", 1, trace_id=99, start_ms=later, end_ms=later + 200,
                     attrs={"runmeter.run.id": "late-99", "runmeter.run.owner": "dee"}),
            llm(2, 1, "gpt-4o-mini", 1_000, 100, trace_id=99, start_ms=later + 10)]
    write(served.store, served.tmp / "late-spool", late)  # another process's writer, while the page is open
    page.wait_for_selector("td[data-field$='.RunId'] .id[title='late-99']", timeout=20_000)
    assert page.evaluate("window.__kept") is True
    assert _run_ids(page)[0] == "late-99"


def test_static_report_tables_fit_and_colours_agree(browser: Browser, served: Served, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNMETER_", "OTEL_"))}
    subprocess.run([sys.executable, "-m", "runmeter.cli", "--store", served.store, "report", "--since", "7d", "--html", str(html)],
                   env=dict(env, RUNMETER_ABANDONED_AFTER_S="60"), check=True, capture_output=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(html.as_uri())
    assert len(page.query_selector_all(".fit table")) >= 6
    overflowing = page.evaluate("""() => [...document.querySelectorAll('.fit')]
        .filter(d => d.scrollWidth > d.clientWidth + 1).map(d => d.querySelector('table').dataset.table)""")
    assert overflowing == []  # every column visible at 1400 px, none behind a scroll bar
    wrapped = page.evaluate("""() => [...document.querySelectorAll('td')].filter(td => {
        const r = document.createRange(); r.selectNodeContents(td);
        const tops = [...r.getClientRects()].map(x => x.top);
        return tops.length > 0 && Math.max(...tops) - Math.min(...tops) > 8; }).length""")
    assert wrapped == 0  # no value broken over two lines
    fills: dict[str, set[str]] = {}
    for el in page.query_selector_all("rect[data-field]"):
        field = el.get_attribute("data-field") or ""
        for model in ("gpt-5.5", "gpt-4o-mini"):
            if f".{model}" in field or field.endswith(model) or f"{model} ·" in field:
                fills.setdefault(model, set()).add(el.get_attribute("fill") or "")
    assert len(fills["gpt-5.5"]) == 1 and len(fills["gpt-4o-mini"]) == 1 and fills["gpt-5.5"] != fills["gpt-4o-mini"]
    assert page.query_selector("[data-field^='bakeoff.0.']") is not None  # the compare section
    assert "e-0" not in page.inner_text("body")  # dollars are never printed like 7.5e-05
    page.close()



def test_hostile_names_are_shown_as_text(page: Page, served: Served) -> None:
    """Names, owners and ids come from spans anyone can send: the pages show them, never run them."""
    name, owner = '<img src=x onerror="window.__pwned=1">', '"><script>window.__pwned=2</script>'
    run_id = "x'\"<b>-1"
    later = 3_100_000
    write(served.store, served.tmp / "hostile-spool", [
        run_root(name, 1, trace_id=77, start_ms=later, end_ms=later + 100,
                 attrs={"runmeter.run.id": run_id, "runmeter.run.owner": owner, "runmeter.run.project": "p/../../etc"}),
        llm(2, 1, "gpt-4o-mini<svg onload=alert(1)>", 1_000, 100, trace_id=77, start_ms=later + 10)])
    for path in ("", "runs", "compare"):
        page.goto(served.url + path)
        assert page.evaluate("window.__pwned") is None
    page.goto(served.url + "runs?sort=StartTime&dir=desc")
    assert name in page.inner_text("table[data-table='runs']") and owner in page.inner_text("table[data-table='runs']")
    page.click("td[data-field='runs.0.RunId'] a")
    page.wait_for_load_state()
    assert page.evaluate("window.__pwned") is None
    assert page.inner_text("[data-field='run.id']") == run_id


def test_on_a_server_store_and_through_its_outage(tmp_path: Path) -> None:
    """The same pages over ClickHouse's HTTP interface; a server that goes away is a clear 503
    page, and the pages come back with it."""
    import json
    import time as _time

    from tests.chhttp import ClickHouseHTTP
    from tests.report_store import spans

    srv = ClickHouseHTTP(str(tmp_path / "engine")).up()
    try:
        write(srv.url, tmp_path / "spool", spans())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNMETER_", "OTEL_"))}
        env.update(RUNMETER_ABANDONED_AFTER_S="60")
        proc = subprocess.Popen([sys.executable, "-m", "runmeter.cli", "--store", srv.url, "ui", "--port", "0"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        try:
            url = proc.stdout.readline().split()[2]
            with urllib.request.urlopen(url + "?format=json") as r:
                totals = json.loads(r.read())["totals"]
            assert totals["TotalCostUsd"] == pytest.approx(1.83) and totals["Runs"] == 7 and totals["Accepted"] == 3  # no review here: summarize stays accepted
            srv.down()
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(url + "runs")
            assert exc.value.code == 503 and "cannot reach ClickHouse" in exc.value.read().decode().replace("&#x27;", "'")
            srv.up()
            deadline = _time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(url + "runs?format=json") as r:
                        assert json.loads(r.read())["total"] == 7
                    break
                except urllib.error.HTTPError:
                    assert _time.monotonic() < deadline
                    _time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            proc.stdout.close()
    finally:
        srv.close()
