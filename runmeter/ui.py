"""``runmeter ui``: a local web app over the query library: Overview, Runs, Run and Compare.

Every figure comes from the named queries in ``runmeter/queries/`` (the same numbers as the CLI,
the HTML report and Grafana) and is drawn with the report's components (:mod:`runmeter.views`).
Pages are plain HTML rendered here; the only script (``static/ui.js``) re-reads a page's live
section every few seconds so new runs appear without a reload. It listens on 127.0.0.1 unless
told otherwise, fetches nothing from the network, and reads the store one short session at a
time, so an agent or collector writing the embedded store is never held up for long.

Each page also answers ``?format=json`` with its data, exact figures included.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

from aiohttp import web

from runmeter import views
from runmeter.config import Settings
from runmeter.core import name_pool_thread
from runmeter.reports import (
    OUTCOMES, RUN_SORTS, Filters, QueryError, parse_since, plain, project_spend, resolve_run, run_detail, run_query,
    short_ids, spend_series,
)

__all__ = ["UI", "make_app", "serve"]

STATIC = Path(__file__).with_name("static")
PAGE_SIZE = 50
SINCE_CHOICES = ("1h", "24h", "7d", "30d", "90d", "365d")
e = views.e


class UI:
    """The pages, over one store. Reads run on a small thread pool, one store session each."""

    def __init__(self, writer: Any, settings: Settings, poll_s: float = 3.0) -> None:
        self.writer = writer
        self.settings = settings
        self.poll_s = poll_s
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runmeter-ui", initializer=name_pool_thread)
        self._drained = 0.0
        self._drain_lock = threading.Lock()

    # -- reading the store ------------------------------------------------------------------

    def _read_now(self, fn: Callable[[Any], Any]) -> Any:
        self._drain()
        with self.writer.store.session() as client:
            return fn(client)

    def _drain(self) -> None:
        """Write batches left in the spool (by processes that could not reach the store) every 10 s."""
        with self._drain_lock:
            if time.monotonic() - self._drained < 10 or not self.writer.spool.pending():
                return
            self._drained = time.monotonic()
        self.writer.flush(timeout_s=5)

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read_now, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- filters ----------------------------------------------------------------------------

    def filters(self, q: Any) -> Filters:
        try:
            min_cost = float(q.get("min_cost") or 0)
        except ValueError:
            raise QueryError(f"minimum cost {q.get('min_cost')!r}: use a number of dollars, like 0.5") from None
        return Filters(
            since=parse_since(q.get("since") or "30d"), owner=q.get("owner", ""), project=q.get("project", ""),
            model=q.get("model", ""), run_name=q.get("name", ""), outcome=q.get("outcome", ""), min_cost=min_cost,
            has_loop=q.get("loops") == "1", unpriced=q.get("unpriced") == "1",
            abandoned_after_s=int(self.settings.runs.abandoned_after_s),
        )

    # -- pages ------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        f = self.filters(q)
        group = q.get("group") or "model"
        if group not in ("model", "owner", "project"):
            raise QueryError(f"spend by {group!r}: use model, owner or project")

        def load(client: Any) -> dict[str, Any]:
            totals = run_query(client, "cost_per_accepted_run", f, group="none")
            bucket, spend = spend_series(client, f, group=group)
            return {
                "totals": totals[0] if totals else None,
                "bucket": bucket, "spend": spend,
                "by_name": run_query(client, "cost_per_accepted_run", f, group="name"),
                "events": run_query(client, "events", f, long_run_s=float(self.settings.ui.long_run_s), limit=25),
                "facets": run_query(client, "facets", f),
                "limits": _limit_rows(self.settings, client),
            }

        data = await self.read(load)
        if q.get("format") == "json":
            return _json({k: v for k, v in data.items() if k != "facets"})
        t = data["totals"] or {"TotalCostUsd": 0.0, "Runs": 0, "Accepted": 0, "UnpricedCalls": 0}
        palette = views.Palette(str(r["Group"]) for r in data["spend"])
        live = (
            views.kpis(float(t["TotalCostUsd"] or 0), int(t["Runs"]), int(t["Accepted"]), int(t["UnpricedCalls"] or 0))
            + f'<h2>Spend over time, by {e(group)}</h2>' + views.spend_columns(data["spend"], data["bucket"], palette)
            + "<h2>Outcomes, by run name</h2>" + views.outcome_bars(data["by_name"])
            + views.table(data["by_name"], views.GROUP_COLUMNS, "by_name", empty="no runs in this period")
            + "<h2>Loops, budget stops, long and abandoned runs</h2>" + _events(data["events"], self.settings.ui.long_run_s)
            + ("<h2>Spend limits, this period</h2>" + views.table(data["limits"], views.LIMIT_COLUMNS, "limits")
               if self.settings.limits.spend else "")
        )
        form = _form(q, data["facets"], ("since", "owner", "project", "model"),
                     extra=_select("group", "spend by", ("model", "owner", "project"), group))
        return self._page(request, "Overview", "What your agent runs really cost", form, live)

    async def runs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        f = self.filters(q)
        sort = q.get("sort") or "StartTime"
        if sort not in RUN_SORTS:
            raise QueryError(f"sort by {sort!r}: use one of {', '.join(RUN_SORTS)}")
        descending = q.get("dir", "desc") != "asc"
        page = _int(q.get("page"), 1, "page")
        size = min(_int(q.get("size"), PAGE_SIZE, "size"), 500)

        def load(client: Any) -> dict[str, Any]:
            rows = run_query(client, "runs_page", f, sort=sort, descending=descending, limit=size, offset=(page - 1) * size)
            return {"runs": rows, "total": rows[0]["TotalRows"] if rows else 0, "facets": run_query(client, "facets", f)}

        data = await self.read(load)
        if q.get("format") == "json":
            return _json({"runs": data["runs"], "total": data["total"], "page": page, "page_size": size})
        rows, total = data["runs"], int(data["total"])
        short = short_ids([r["RunId"] for r in rows])

        def sort_link(col: str) -> str:
            flip = "asc" if col == sort and descending else "desc"
            return "/runs?" + urlencode({**_kept(q), "sort": col, "dir": flip})

        pages = max(1, -(-total // size))
        pager = f'<div class="pager"><span data-field="runs.total" data-value="{total}">{total:,} runs</span>'
        if page > 1:
            pager += f'<a rel="prev" href="/runs?{e(urlencode({**_kept(q), "sort": sort, "dir": "desc" if descending else "asc", "page": page - 1}))}">← newer page</a>'
        pager += f"<span>page {page} of {pages}</span>"
        if page < pages:
            pager += f'<a rel="next" href="/runs?{e(urlencode({**_kept(q), "sort": sort, "dir": "desc" if descending else "asc", "page": page + 1}))}">next page →</a>'
        pager += "</div>"
        live = pager + views.table(rows, views.runs_columns(short, lambda rid: f"/runs/{quote(rid, safe='')}"), "runs",
                                   sort_link=sort_link, sorted_by=sort, empty="no runs match these filters")
        form = _form(q, data["facets"], ("since", "owner", "project", "model", "name", "outcome", "min_cost", "loops", "unpriced"),
                     hidden={"sort": sort, "dir": "desc" if descending else "asc", **({"size": str(size)} if size != PAGE_SIZE else {})})
        return self._page(request, "Runs", "Runs", form, live)

    async def run(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["run_id"]
        abandoned = int(self.settings.runs.abandoned_after_s)

        def load(client: Any) -> tuple[str, dict[str, Any] | None]:
            run_id = resolve_run(client, wanted)
            return run_id, run_detail(client, run_id, abandoned)

        run_id, detail = await self.read(load)
        if run_id != wanted:
            raise web.HTTPFound(f"/runs/{quote(run_id, safe='')}" + (f"?{request.query_string}" if request.query_string else ""))
        if detail is None:
            raise web.HTTPNotFound(text=f"no run with id {wanted!r}")
        if request.query.get("format") == "json":
            return _json(detail)
        return self._page(request, "Run", f"Run {detail['run']['Name']}", "", _run_page(detail, self.settings.ui.trace_url))

    async def compare(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        f = self.filters(q)
        small_below = _int(q.get("small_below"), 1_000, "small_below")
        large_above = _int(q.get("large_above"), 10_000, "large_above")
        if small_below >= large_above:
            raise QueryError("'small below' must be below 'large above'")
        chosen = [m for m in q.getall("m", []) if m]

        def load(client: Any) -> dict[str, Any]:
            by_model = run_query(client, "cost_per_accepted_run", f, group="model")
            models = chosen or [r["Group"] for r in by_model if r["Group"]][:2]
            bakeoff = run_query(client, "bakeoff", f, models=models, small_below=small_below, large_above=large_above) if models else []
            return {"models": models, "all_models": sorted(r["Group"] for r in by_model if r["Group"]), "bakeoff": bakeoff,
                    "projection": project_spend(bakeoff, models[0], models[1]) if len(models) >= 2 else []}

        data = await self.read(load)
        if q.get("format") == "json":
            return _json(data)
        palette = views.Palette(data["all_models"] + data["models"])
        boxes = "".join(
            f'<label class="check"><input type="checkbox" name="m" value="{e(m)}"{" checked" if m in data["models"] else ""}> '
            f'<i style="background:{palette(m)};display:inline-block;width:.8em;height:.8em"></i> {e(m)}</label>'
            for m in data["all_models"])
        form = (f'<form class="filters" method="get" action="/compare">{_since(q)}{boxes}'
                f'<label>small below (input tokens)<input name="small_below" type="number" min="1" value="{small_below}"></label>'
                f'<label>large above<input name="large_above" type="number" min="2" value="{large_above}"></label>'
                '<button type="submit">Compare</button></form>'
                '<p class="note">The first model ticked is the one whose traffic is projected onto the second.</p>')
        live = views.compare_section(data["bakeoff"], data["projection"], data["models"], small_below, large_above, palette)
        return self._page(request, "Compare", "Compare models on your own traces", form, live)

    # -- the page shell ---------------------------------------------------------------------

    def _page(self, request: web.Request, nav: str, title: str, form: str, live: str) -> web.StreamResponse:
        digest = hashlib.sha1(live.encode()).hexdigest()[:16]
        if request.query.get("fragment") == "live":
            return web.Response(text=live, content_type="text/html", headers={"X-Digest": digest, "Cache-Control": "no-store"})
        links = "".join(f'<a class="{"on" if name == nav else ""}" href="{href}">{name}</a>'
                        for name, href in (("Overview", "/"), ("Runs", "/runs"), ("Compare", "/compare")))
        store = e(self.writer.store.url.redacted())
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)} · runmeter</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{views.CSS}</style>
<link rel="icon" href="data:,"><script src="/static/ui.js" defer></script></head>
<body><nav class="top"><b>runmeter</b>{links}<span class="note" style="margin-left:auto">store: {store} ·
<span id="live-status">live</span></span></nav>
<main><h1>{e(title)}</h1>{form}
<section id="live" data-live="{self.poll_s:g}" data-digest="{digest}">{live}</section></main></body></html>"""
        return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


# -- page parts ------------------------------------------------------------------------------

_EVENT_WORDS = {"loop": "loop", "budget_stop": "budget stop", "budget_warning": "over budget", "long_run": "long run",
                "abandoned": "abandoned"}


def _events(rows: list[dict[str, Any]], long_run_s: float) -> str:
    if not rows:
        return '<p class="note">none in this period</p>'
    short = short_ids([r["RunId"] for r in rows])
    items = []
    for i, r in enumerate(rows):
        detail = f" {e(r['Kind'])}" + (f" · {e(r['Detail'])}" if r["Detail"] else "")
        items.append(
            f'<li data-field="events.{i}" data-value="{e(r["Event"])}"><span class="note">{r["Time"]:%Y-%m-%d %H:%M:%S}</span> '
            f'<span class="badge {"loop" if r["Event"] == "loop" else "stop"}">{_EVENT_WORDS.get(r["Event"], e(r["Event"]))}</span> '
            f'<a href="/runs/{quote(r["RunId"], safe="")}"><span class="id">{e(short[r["RunId"]])}</span></a> {e(r["Name"])}{detail} · '
            f'{views.usd(r["CostUsd"])}</li>')
    return (f'<ul class="events">{"".join(items)}</ul><p class="note">A long run took more than {long_run_s:g} s '
            '(<code>[ui] long_run_s</code>); abandoned: no outcome after <code>[runs] abandoned_after_s</code>.</p>')


def _run_page(d: dict[str, Any], trace_url: str) -> str:
    r = d["run"]
    wall = (r["EndTime"] - r["StartTime"]).total_seconds() if r["EndTime"] and r["StartTime"] else None
    link = ""
    if trace_url and r["TraceId"]:
        link = f' · <a href="{e(trace_url.replace("{trace_id}", quote(r["TraceId"], safe="")))}" rel="noopener">open the trace</a>'
    facts = [
        ("Outcome", f'<span class="outcome-{e(r["Outcome"])}" data-field="run.outcome" data-value="{e(r["Outcome"])}">{e(r["Outcome"])}</span>'),
        ("Cost", f'<b data-field="run.cost" data-value="{views.exact(r["CostUsd"])}">'
                 f'{"—" if r["Pricing"] == "unpriced" else views.usd(r["CostUsd"])}</b> {views.pricing_badge(r)}'),
        ("LLM calls", f'<span data-field="run.llm_calls" data-value="{r["LlmCalls"]}">{r["LlmCalls"]:,}</span>'
                      + (f' ({r["UnpricedCalls"]} unpriced)' if r["UnpricedCalls"] else "")
                      + (f' ({r["EstimatedCalls"]} estimated)' if r["EstimatedCalls"] else "")),
        ("Tool calls", f'<span data-field="run.tool_calls" data-value="{r["ToolCalls"]}">{r["ToolCalls"]:,}</span>'),
        ("Tokens", f'{r["InputTokens"]:,} in · {r["OutputTokens"]:,} out'),
        ("Wall clock", "—" if wall is None else views.duration(wall)),
        ("Owner · project", f'{e(r["Owner"] or "—")} · {e(r["Project"] or "—")}'),
        ("Task", e(r["TaskId"] or "—")),
    ]
    head = (f'<p class="sub"><span class="id" data-field="run.id">{e(r["RunId"])}</span> · started {r["StartTime"]:%Y-%m-%d %H:%M:%S} UTC'
            f'{link}</p><div class="kpis">'
            + "".join(f'<div class="kpi">{k}<div>{v}</div></div>' for k, v in facts) + "</div>")
    signals = d["signals"]
    outcomes = views.table(d["outcomes"], (views.Column("Time", "When (UTC)", "time"), views.Column("Outcome", "Outcome", "text"),
                                           views.Column("Reason", "Reason", "name"), views.Column("Source", "Source", "text")),
                           "outcomes", empty="no outcome recorded yet")
    return (head + "<h2>Where the money went</h2>" + _tree(d["spans"], signals)
            + "<h2>Loop signals and budget breaches</h2>" + _signal_list(signals)
            + "<h2>Outcome history</h2>" + outcomes
            + '<p class="note">The last outcome is the run\'s. Record one with <code>runmeter outcome RUN_ID accepted</code>.</p>')


def _signal_list(signals: list[dict[str, Any]]) -> str:
    if not signals:
        return '<p class="note">none</p>'
    return "<ul>" + "".join(f'<li data-field="signal.{i}">{e(views.signal_text(s))}</li>' for i, s in enumerate(signals)) + "</ul>"


def _repeat_of(span: dict[str, Any], signals: list[dict[str, Any]]) -> str:
    """The loop signal a call is one of the repeats of, if any."""
    for s in signals:
        if s["Signal"] != "loop" or s["RunId"] != span["CallRunId"]:
            continue
        if (s["Kind"] == "identical_tool_call" and span["Kind"] == "tool" and f'{span["ToolName"]}#{span["ArgsHash"]}' == s["Key"]) \
                or (s["Kind"] == "identical_llm_input" and span["Kind"] == "llm" and span["InputHash"] == s["Key"]) \
                or (s["Kind"] == "repeated_context_read" and span["Kind"] == "tool" and span["Resource"] == s["Key"]):
            return s["Kind"]
    return ""


def _tree(spans: list[dict[str, Any]], signals: list[dict[str, Any]]) -> str:
    if not spans:
        return '<p class="note">no spans stored for this run (past the traces\' retention, or not written yet)</p>'
    ids = {s["SpanId"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        children.setdefault(s["ParentSpanId"] if s["ParentSpanId"] in ids else "", []).append(s)

    def subtotal(span_id: str) -> float:
        total = 0.0
        for c in children.get(span_id, []):
            if c["Kind"] == "llm" and c["Pricing"] in ("priced", "estimated"):
                total += float(c["CostUsd"] or 0)
            total += subtotal(c["SpanId"])
        return total

    def node(s: dict[str, Any]) -> str:
        kind = s["Kind"] or "span"
        sid = e(s["SpanId"])
        bits = [f'<span class="kind">{e(kind)}</span>', f'<b>{e(s["SpanName"])}</b>']
        if kind == "run":
            cost = subtotal(s["SpanId"])
            bits.append(f'<span data-field="node.{sid}.cost" data-value="{views.exact(round(cost, 9))}">{views.usd(cost)}</span>')
        elif s["Pricing"] == "duplicate":
            bits.append('<span class="note">the same call as its parent, counted there</span>')
        elif s["Pricing"] == "unpriced":
            bits.append(f'<span class="badge unpriced" data-field="node.{sid}.cost" data-value="">unpriced: {e(s["UnpricedReason"] or "no price")}</span>')
        elif s["CostUsd"] is not None:
            bits.append(f'<span data-field="node.{sid}.cost" data-value="{views.exact(s["CostUsd"])}">{views.usd(s["CostUsd"])}</span>'
                        + (' <span class="badge estimated">estimated</span>' if s["Pricing"] == "estimated" else ""))
        if s["InputTokens"] or s["OutputTokens"]:
            cache = ", ".join(x for x in (f'cache read {s["CacheReadTokens"]:,}' if s["CacheReadTokens"] else "",
                                          f'cache write {s["CacheWriteTokens"]:,}' if s["CacheWriteTokens"] else "") if x)
            reasoning = f' (reasoning {s["ReasoningTokens"]:,})' if s["ReasoningTokens"] else ""
            bits.append(f'<span data-field="node.{sid}.tokens">{s["InputTokens"]:,} in{f" ({cache})" if cache else ""} · '
                        f'{s["OutputTokens"]:,} out{reasoning}</span>')
        bits.append(f'<span class="note">{s["Duration"] / 1e6:,.1f} ms</span>')
        if s["CostSource"]:
            bits.append(f'<span class="note" title="where the price came from">{e(s["CostSource"])}</span>')
        if s["StatusCode"] == "Error":
            bits.append('<span class="badge unpriced">error</span>')
        repeat = _repeat_of(s, signals)
        if repeat:
            bits.append(f'<span class="badge loop" title="{e(repeat)}">repeat</span>')
        marks = ""
        if kind == "run":
            marks = "".join(f'<div class="signal" data-field="node.{sid}.signal">⚠ {e(views.signal_text(x))}</div>'
                            for x in signals if x["RunId"] == s["CallRunId"])
        inner = f'<span class="node">{"".join(bits)}</span>{marks}'
        kids = children.get(s["SpanId"], [])
        if kids:
            return (f'<li data-span="{sid}" data-kind="{e(kind)}"><details open><summary>{inner}</summary>'
                    f'<ul class="tree">{"".join(node(c) for c in kids)}</ul></details></li>')
        return f'<li data-span="{sid}" data-kind="{e(kind)}">{inner}</li>'

    return f'<ul class="tree root">{"".join(node(s) for s in children.get("", []))}</ul>'


def _kept(q: Any) -> dict[str, str]:
    """The filters of a query string, to carry into a sort or page link."""
    keep = ("since", "owner", "project", "model", "name", "outcome", "min_cost", "loops", "unpriced", "size")
    return {k: q[k] for k in keep if q.get(k)}


def _since(q: Any) -> str:
    current = q.get("since") or "30d"
    choices = SINCE_CHOICES if current in SINCE_CHOICES else (current, *SINCE_CHOICES)
    return _select("since", "period", choices, current, lambda c: f"last {c}")


def _select(name: str, label: str, choices: Any, current: str, word: Callable[[str], str] = str) -> str:
    opts = "".join(f'<option value="{e(c)}"{" selected" if c == current else ""}>{e(word(c) if c else "all")}</option>' for c in choices)
    return f'<label>{e(label)}<select name="{e(name)}">{opts}</select></label>'


def _form(q: Any, facets: list[dict[str, Any]], fields: tuple[str, ...], extra: str = "", hidden: dict[str, str] | None = None) -> str:
    values: dict[str, list[str]] = {}
    for f in facets:
        values.setdefault(f["Facet"], []).append(f["Value"])
    parts = []
    for name in fields:
        if name == "since":
            parts.append(_since(q))
        elif name in ("owner", "project", "model", "name"):
            current = q.get(name, "")
            choices = ["", *values.get(name, [])]
            if current and current not in choices:
                choices.append(current)
            parts.append(_select(name, "run name" if name == "name" else name, choices, current))
        elif name == "outcome":
            parts.append(_select("outcome", "outcome", ("", *OUTCOMES), q.get("outcome", "")))
        elif name == "min_cost":
            parts.append(f'<label>cost at least ($)<input name="min_cost" type="number" min="0" step="any" value="{e(q.get("min_cost", ""))}"></label>')
        elif name in ("loops", "unpriced"):
            word = "has a loop signal" if name == "loops" else "has unpriced calls"
            checked = " checked" if q.get(name) == "1" else ""
            parts.append(f'<label class="check"><span><input type="checkbox" name="{name}" value="1"{checked}> {word}</span></label>')
    parts.append(extra)
    parts += [f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (hidden or {}).items()]
    return f'<form class="filters" method="get">{"".join(parts)}<button type="submit">Apply</button></form>'


def _int(value: str | None, default: int, name: str) -> int:
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise QueryError(f"{name} {value!r}: use a whole number") from None
    if not 1 <= n <= 10**12:
        raise QueryError(f"{name} {value!r}: use a whole number from 1")
    return n


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(plain(data), indent=1), content_type="application/json")


# -- the application -------------------------------------------------------------------------

@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    from runmeter.exporter import StoreError

    try:
        response: web.StreamResponse = await handler(request)
        return response
    except QueryError as exc:
        return _error_page(400, "That filter does not work", str(exc))
    except (StoreError, TimeoutError) as exc:
        return _error_page(503, "The store cannot be read right now", f"{exc}. The page will work again when it can; try a reload.")


def _error_page(status: int, title: str, message: str) -> web.Response:
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)} · runmeter</title><style>{views.CSS}</style>'
            f'<link rel="icon" href="data:,"></head><body><main><h1>{e(title)}</h1><p data-field="error">{e(message)}</p><p><a href="/">Overview</a> · '
            '<a href="/runs">Runs</a></p></main></body></html>')
    return web.Response(status=status, text=body, content_type="text/html")


def make_app(ui: UI) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app.router.add_get("/", ui.overview)
    app.router.add_get("/runs", ui.runs)
    app.router.add_get("/runs/{run_id}", ui.run)
    app.router.add_get("/compare", ui.compare)
    app.router.add_get("/healthz", lambda _: _healthz())
    app.router.add_static("/static/", STATIC)
    app.on_cleanup.append(lambda _: _close(ui))
    return app


async def _healthz() -> web.Response:
    return web.Response(text="ok\n")


async def _close(ui: UI) -> None:
    ui.close()


def serve(ui: UI, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted; ``on_ready`` gets the URL once the socket listens."""

    async def main() -> None:
        runner = web.AppRunner(make_app(ui), access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        on_ready(f"http://{shown}:{bound[1]}/")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, web.GracefulExit):
        pass


def _limit_rows(settings: Any, client: Any) -> list[dict[str, Any]]:
    """Each spend limit of [limits] with what it has spent this period (as `runmeter limits`)."""
    if not settings.limits.spend:
        return []
    from runmeter.limits import limit_rows, query_of

    return limit_rows(settings.limits, query_of(client))
