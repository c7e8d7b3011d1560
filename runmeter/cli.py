"""The ``runmeter`` command: reports from the store, late outcomes, prices, and the database.

Every report reads the same named queries as the HTML report and the Grafana
dashboards (``runmeter/queries/``). Output: a table, ``--json`` or ``--csv``.
The store is ``--store``, else ``RUNMETER_CLICKHOUSE_URL`` / ``runmeter.toml``,
else the embedded ``.runmeter/``; batches still in the spool are written before
a report answers.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional

import typer
from rich.markup import escape

from runmeter import views
from runmeter.terminal import (
    BAKEOFF_COLUMNS, BUDGET_COLUMNS, LIMIT_COLUMNS, LOOP_COLUMNS, NOTE_COST_PER_ACCEPTED_RUN, NOTE_COST_PER_ACCEPTED_TASK, PROJECTION_COLUMNS,
    REPORT_COLUMNS, RUNS_COLUMNS, emit, err, out,
)
from runmeter.config import ConfigError, load_settings
from runmeter.conventions import check_outcome
from runmeter.exporter import SchemaOptions, Store, StoreError, default_spool_dir, open_writer, render, without_dataframes
from runmeter.exporter import OUTCOME_COLUMNS, Batch, applied_versions, insert_batch, load_migrations, outcome_row
from runmeter.processor import OutcomeEvent, PriceBook
from runmeter.reports import Filters, QueryError, parse_since, plain, project_spend, resolve_run, run_detail, run_query

# Help texts are plain text: rich markup would eat "runmeter[collector]" as a tag.
app = typer.Typer(help="runmeter: what an LLM agent run really costs.", no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None)
db_app = typer.Typer(help="The ClickHouse store: migrations, state, the spool.", no_args_is_help=True, rich_markup_mode=None)
grafana_app = typer.Typer(help="Grafana dashboards, data source and alert rules for the store.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(db_app, name="db")
app.add_typer(grafana_app, name="grafana")


class Group(str, Enum):
    name = "name"
    owner = "owner"
    project = "project"
    provider = "provider"
    model = "model"


class Sort(str, Enum):
    started = "started"
    cost = "cost"
    name = "name"
    calls = "calls"
    tools = "tools"
    wall = "wall"


_SORT_COLUMNS = {"started": "StartTime", "cost": "CostUsd", "name": "Name", "calls": "LlmCalls", "tools": "ToolCalls", "wall": "WallClockS"}


class _State:
    store_url: str | None = None


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@app.callback()
def main_options(store: Optional[str] = typer.Option(None, "--store", help="chdb:///path or http(s)://user:pass@host:8123/db")) -> None:
    _State.store_url = store


def _settings() -> Any:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc), 2)


def _writer(read: bool = True) -> Any:
    """The writer of the configured store. For a read, an embedded store that does not exist (and
    has nothing waiting in its spool) is an error, and nothing is created."""
    settings = _settings()
    url = _State.store_url or settings.storage.clickhouse_url
    try:
        store = Store(url)
        if read and store.embedded and store.url.path is not None and not store.url.path.exists():
            spool = Path(settings.storage.spool_dir) if settings.storage.spool_dir else default_spool_dir(store)
            if not (spool.is_dir() and any(spool.iterdir())):
                _fail(f"no store at {store.url.path}: nothing has been recorded there yet. Run an agent with runmeter, "
                      "or point --store (or RUNMETER_CLICKHOUSE_URL) at your store.")
        return open_writer(url, settings.storage.spool_dir, settings.storage.spool_max_bytes, background=False)
    except StoreError as exc:
        _fail(str(exc))


@contextmanager
def _client(drain: bool = True) -> Iterator[Any]:
    """A store session, saying on stderr what it waits for: another process holding the embedded
    store, the spool being written, a long query."""
    try:
        writer = _writer()
        with err.status("reading the store...") as status:

            def waiting(who: str) -> None:
                message = f"waiting for the store held by {who}..."
                if err.is_terminal:
                    status.update(message)
                else:
                    err.print(message)

            writer.store.on_wait = waiting
            pending = len(writer.spool.pending()) if drain else 0
            if pending:
                status.update(f"writing {pending} batches from the spool to the store...")
                if not writer.flush(timeout_s=60):
                    err.print("[yellow]warning:[/] some batches are still in the spool; the numbers may be behind")
                status.update("reading the store...")
            with writer.store.session() as client:
                yield client
    except StoreError as exc:
        _fail(str(exc))
    except TimeoutError as exc:
        _fail(f"{exc}; try again when it finishes")


def _filters(since: str | None, owner: str, project: str, model: str, **more: Any) -> Filters:
    try:
        start = parse_since(since)
        return Filters(since=start, owner=owner, project=project, model=model, abandoned_after_s=_abandoned_after_s(), **more)
    except QueryError as exc:
        _fail(str(exc), 2)


SinceOpt = typer.Option(None, "--since", help="7d, 24h, 30m, 2w or a date (default 30d)")
OwnerOpt = typer.Option("", "--owner")
ProjectOpt = typer.Option("", "--project")
ModelOpt = typer.Option("", "--model")
JsonOpt = typer.Option(False, "--json", help="JSON output, every column, exact figures")
CsvOpt = typer.Option(False, "--csv", help="CSV output, every column")
WideOpt = typer.Option(False, "--wide", help="every column, wider than the terminal if need be")

@app.command()
def report(
    group: Group = typer.Option(Group.name, "--group", help="group runs by"),
    since: Optional[str] = SinceOpt, owner: str = OwnerOpt, project: str = ProjectOpt, model: str = ModelOpt,
    as_json: bool = JsonOpt, as_csv: bool = CsvOpt, wide: bool = WideOpt,
    html: Optional[Path] = typer.Option(None, "--html", help="also write a self-contained HTML report"),
) -> None:
    """Cost per accepted run (and task), by run name, owner, project, provider or model."""
    f = _filters(since, owner, project, model)
    with _client() as client:
        rows = run_query(client, "cost_per_accepted_run", f, group=group.value)
        if html is not None:
            from runmeter.html_report import write_html

            write_html(client, f, html)
    if html is not None:
        err.print(f"wrote {escape(str(html))}")
    if not rows and not (as_json or as_csv):
        _fail("no runs in the store for these filters (is the store empty? run an agent, or widen --since)", 1)
    emit(rows, as_json, as_csv, f"Cost per accepted run, by {group.value}", "no runs", REPORT_COLUMNS, wide, (NOTE_COST_PER_ACCEPTED_RUN, NOTE_COST_PER_ACCEPTED_TASK))


@app.command()
def runs(
    since: Optional[str] = SinceOpt, owner: str = OwnerOpt, project: str = ProjectOpt, model: str = ModelOpt,
    name: str = typer.Option("", "--name", help="runs of this name"),
    outcome_: str = typer.Option("", "--outcome", help="accepted | rejected | abandoned | failed | unknown"),
    min_cost: float = typer.Option(0.0, "--min-cost", help="runs that cost at least this many dollars"),
    loops_only: bool = typer.Option(False, "--loops", help="only runs with a loop signal"),
    unpriced: bool = typer.Option(False, "--unpriced", help="only runs with unpriced calls"),
    sort: Sort = typer.Option(Sort.cost, "--sort", help="sort by (most first; --asc for least)"),
    asc: bool = typer.Option(False, "--asc", help="least first"),
    limit: int = typer.Option(20, "--limit", min=1, max=10_000), as_json: bool = JsonOpt, as_csv: bool = CsvOpt, wide: bool = WideOpt,
) -> None:
    """Runs, most expensive first: filter, sort, and the short ids `runmeter run` takes."""
    f = _filters(since, owner, project, model, run_name=name, outcome=outcome_, min_cost=min_cost, has_loop=loops_only, unpriced=unpriced)
    with _client() as client:
        rows = run_query(client, "runs_page", f, sort=_SORT_COLUMNS[sort.value], descending=not asc, limit=limit, offset=0)
    total = rows[0]["TotalRows"] if rows else 0
    for r in rows:
        r.pop("TotalRows")
        r["Signals"] = " ".join(x for x in (f"loop×{r['LoopSignals']}" if r["LoopSignals"] else "",
                                             "stopped" if r["Stopped"] else "over budget" if r["Breaches"] else "") if x)
    notes = (f"{len(rows)} of {total} runs. `runmeter run ID` takes the short id.",) if rows else ()
    emit(rows, as_json, as_csv, "Runs", "no runs for these filters", RUNS_COLUMNS, wide, notes)


@app.command("run")
def run_detail_cmd(run_id: str = typer.Argument(..., help="a run id, or the short id `runmeter runs` shows"), as_json: bool = JsonOpt) -> None:
    """One run: its record, its tree of spans with cost and tokens, loop signals and outcomes."""
    with _client() as client:
        try:
            full = resolve_run(client, run_id)
        except QueryError as exc:
            _fail(str(exc))
        detail = run_detail(client, full, _abandoned_after_s())
    if detail is None:
        _fail(f"no run with id {run_id!r} (see `runmeter runs` for ids)")
    if as_json:
        sys.stdout.write(json.dumps(plain(detail), indent=2) + "\n")
        return
    s, tree = detail["run"], detail["spans"]
    cost = "unpriced" if s["Pricing"] == "unpriced" else views.usd(s["CostUsd"])
    out.print(f"[bold]{escape(s['Name'])}[/] {escape(s['RunId'])}", soft_wrap=True)
    out.print(f"outcome: {escape(s['Outcome'])}  cost: {cost} ({escape(_state(s))})  LLM calls: {s['LlmCalls']}  tools: {s['ToolCalls']}",
              soft_wrap=True)
    children: dict[str, list[dict[str, Any]]] = {}
    ids = {r["SpanId"] for r in tree}
    for r in tree:
        children.setdefault(r["ParentSpanId"] if r["ParentSpanId"] in ids else "", []).append(r)

    def show(parent: str, depth: int) -> None:
        for r in children.get(parent, []):
            state = r["Pricing"]
            cost = f"  {views.usd(r['CostUsd'])}" if r["CostUsd"] is not None else ""
            if state == "estimated":
                cost += " (estimated)"
            elif state == "unpriced":
                cost = f"  unpriced ({r['UnpricedReason'] or 'no price'})"
            elif state == "duplicate":
                cost = "  (the same call as its parent, counted there)"
            toks = f"  {r['InputTokens']:,}→{r['OutputTokens']:,} tok" if r["InputTokens"] or r["OutputTokens"] else ""
            out.print(escape(f"{'  ' * depth}{r['SpanName']}  {r['Duration'] / 1e6:,.1f} ms{cost}{toks}"), soft_wrap=True)
            show(r["SpanId"], depth + 1)

    show("", 0)
    for sig in detail["signals"]:
        out.print(escape(f"⚠ {views.signal_text(sig)}"), style="yellow", soft_wrap=True)
    for o in detail["outcomes"][:-1]:
        out.print(escape(f"earlier outcome: {o['Outcome']} ({o['Source']}{', ' + o['Reason'] if o['Reason'] else ''})"), style="dim")


def _state(s: dict[str, Any]) -> str:
    """The state of a run's number, in the words every report uses."""
    parts = [s["Pricing"].replace("_", " ")]
    if s["UnpricedCalls"]:
        parts.append(f"{s['UnpricedCalls']} of {s['LlmCalls']} calls unpriced")
    if s["EstimatedCalls"]:
        parts.append(f"{s['EstimatedCalls']} estimated")
    if s["Incomplete"]:
        parts.append("incomplete: spans missing")
    return ", ".join(parts)


def _abandoned_after_s() -> int:
    return int(_settings().runs.abandoned_after_s)


@app.command()
def loops(since: Optional[str] = SinceOpt, owner: str = OwnerOpt, project: str = ProjectOpt, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Runs stuck in loops: repeated tool calls, context reads, LLM inputs, cycles, and what they cost."""
    with _client() as client:
        rows = run_query(client, "loops", _filters(since, owner, project, ""))
    emit(rows, as_json, as_csv, "Loop signals", "no loop signals", LOOP_COLUMNS,
          notes=("On repeats: measured for identical LLM inputs; an estimate where Est. = 1 (tool repeats).",))


@app.command()
def budgets(since: Optional[str] = SinceOpt, owner: str = OwnerOpt, project: str = ProjectOpt, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Budget breaches by limit, stopped vs warned, and the spend stops saved (an estimate)."""
    with _client() as client:
        rows = run_query(client, "budgets", _filters(since, owner, project, ""))
    emit(rows, as_json, as_csv, "Budget breaches", "no budget breaches", BUDGET_COLUMNS,
          notes=("Saved (estimate): a stopped run, had it made as many LLM calls as same-named runs that were not stopped.",))


@app.command()
def limits(as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Each spend limit of [limits], what its scope has spent this period (every process, from the
    store), and the headroom left."""
    from runmeter.limits import limit_rows, query_of

    settings = _settings()
    if not settings.limits.spend:
        message = 'no spend limits: add [[limits.spend]] to runmeter.toml (see README, "Spend limits")'
        out.print(f"[dim]{escape(message)}[/]")
        return
    with _client() as client:
        rows = limit_rows(settings.limits, query_of(client))
    emit(rows, as_json, as_csv, "Spend limits (this period, every process)", "no spend limits", LIMIT_COLUMNS,
         notes=("Spent: LLM calls stored in ClickHouse since the period began (UTC); an agent also counts its own calls not yet stored.",))


alerts_app = typer.Typer(help="Alerts: loops, long and abandoned runs, budget breaches, spend limits, unpriced calls.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("run")
def alerts_run(
    since: str = typer.Option("1h", "--since", help="the window to look at: 1h, 30m, 1d (run it at least that often)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would be sent, send nothing"),
) -> None:
    """Send the alerts the store shows for the window (every process's runs, the collector's too),
    each once: for cron, or the Helm chart's CronJob. Exits 1 when a destination refused."""
    from runmeter import alerts

    settings = _settings()
    if not settings.alerts.rules:
        _fail("no alert rules: add [[alerts.rules]] and [[alerts.to]] to runmeter.toml (see README, \"Alerts\")", 2)
    if not settings.alerts.to and not dry_run:
        _fail("no destination: add [[alerts.to]] (webhook, slack or alertmanager) to runmeter.toml", 2)
    start = parse_since(since)
    with _client() as client:
        found = alerts.period_alerts(settings.alerts, client, start, settings.limits if settings.limits.spend else None,
                                     abandoned_after_s=_abandoned_after_s())
        sent_before = alerts.already_sent(client, found)
        todo = [a for a in found if (a.rule, a.key) not in sent_before]
        if dry_run:
            emit([{"Rule": a.rule, "Key": a.key, "Summary": a.summary} for a in todo], False, False,
                 f"{len(todo)} alert(s) to send ({len(found) - len(todo)} sent before)", "nothing to send")
            return
        sender = alerts.Sender(settings.alerts)
        for a in todo:
            sender.send(a)
        sender.close(timeout_s=120)
        delivered = {(a.rule, a.key): a for _, a in sender.sent}
        alerts.record_sent(client, list(delivered.values()))
    out.print(f"{len(delivered)} alert(s) sent, {len(found) - len(todo)} sent before, {len(todo) - len(delivered)} not delivered")
    if len(delivered) < len(todo):
        raise typer.Exit(1)


@app.command()
def compare(
    model: list[str] = typer.Option(..., "--model", help="two or more models"),
    since: Optional[str] = SinceOpt,
    small_below: int = typer.Option(1_000, "--small-below", help="input tokens below this are 'small'"),
    large_above: int = typer.Option(10_000, "--large-above", help="input tokens above this are 'large'"),
    as_json: bool = JsonOpt, as_csv: bool = CsvOpt,
) -> None:
    """Model bake-off on your own traces, by prompt size, with the projected spend of moving traffic."""
    if len(model) < 2:
        _fail("compare needs at least two --model options", 2)
    if small_below >= large_above:
        _fail("--small-below must be below --large-above", 2)
    with _client() as client:
        rows = run_query(client, "bakeoff", _filters(since, "", "", ""), models=list(model), small_below=small_below, large_above=large_above)
    projection = [dict(From=model[0], To=model[1], **p) for p in project_spend(rows, model[0], model[1])]
    if as_json:
        sys.stdout.write(json.dumps({"buckets": plain(rows), "projection": plain(projection)}, indent=2) + "\n")
        return
    emit(rows, False, as_csv, f"Model bake-off (small < {small_below:,} ≤ medium ≤ {large_above:,} < large input tokens)",
          "no calls for these models", BAKEOFF_COLUMNS)
    if not as_csv:
        emit(projection, False, False, f"If {model[0]}'s traffic moved to {model[1]}", "no overlap to project", PROJECTION_COLUMNS)


@app.command()
def outcome(
    run_id: str,
    value: str = typer.Argument(..., help="accepted | rejected | abandoned | failed"),
    note: str = typer.Option("", "--note", help="a reason, kept with the outcome"),
) -> None:
    """Record a late outcome for a run (a human review); the latest outcome wins."""
    try:
        check_outcome(value)
    except ValueError as exc:
        _fail(str(exc), 2)
    with _client() as client:
        if not run_query(client, "run_summary", run_id=run_id, abandoned_after_s=_abandoned_after_s()):
            _fail(f"no run with id {run_id!r} (see `runmeter runs` for ids)")
        event = OutcomeEvent(run_id, value, note, time.time_ns(), "cli")
        tables = {"runmeter_outcomes": {"columns": OUTCOME_COLUMNS, "rows": [outcome_row(event)]}}
        insert_batch(client, Batch.of(tables))
    out.print(f"run {run_id}: {value}" + (f" ({note})" if note else ""))


@app.command()
def prices(model: str, provider: Optional[str] = typer.Option(None, "--provider")) -> None:
    """A model's price and where it comes from (genai-prices or runmeter.toml)."""
    book = PriceBook(_settings().pricing)
    found = book.describe(provider, model)
    if found is None:
        _fail(f"no price known for {model!r}: calls to it are recorded as unpriced (add it to runmeter.toml)")
    model_id, source, price = found
    out.print(f"[bold]{model_id}[/]  source: {source}")
    out.print(str(price) if not isinstance(price, dict) else ", ".join(f"{k} = {v}" for k, v in price.items()))


@db_app.command("migrate")
def db_migrate(
    cluster: Optional[str] = typer.Option(None, "--cluster", help="emit ON CLUSTER DDL with Replicated and Distributed tables"),
    print_only: bool = typer.Option(False, "--print", help="print the DDL instead of running it"),
) -> None:
    """Create or upgrade the schema (also done automatically on first use)."""
    try:
        opts = SchemaOptions(cluster=cluster)
    except ValueError as exc:
        _fail(str(exc), 2)
    if print_only:
        for m in load_migrations():
            sys.stdout.write(f"-- {m.version:03d}_{m.name}\n")
            for stmt in render(m.text, opts):
                sys.stdout.write(stmt + ";\n\n")
        return
    settings = _settings()
    url = _State.store_url or settings.storage.clickhouse_url
    try:
        store = Store(url, schema=opts)
        with store.session() as client:
            versions = sorted(applied_versions(client))
    except StoreError as exc:
        _fail(str(exc))
    out.print(f"schema at version {versions[-1] if versions else 0} ({store.url.redacted()})")


@db_app.command("info")
def db_info() -> None:
    """Schema version, row counts, and batches waiting in the spool."""
    writer = _writer()
    out.print(f"store: {writer.store.url.redacted()}\nspool: {writer.spool.dir} ({len(writer.spool.pending())} batches, {writer.spool.size()} bytes)")
    with _client(drain=False) as client:
        versions = sorted(applied_versions(client))
        out.print(f"schema version: {versions[-1] if versions else 0}")
        for table in ("otel_traces", "runmeter_calls", "runmeter_runs", "runmeter_outcomes"):
            count = client.query(f"SELECT count() FROM {table}").result_rows[0][0]
            out.print(f"{table}: {count:,} rows")


@db_app.command("drain")
def db_drain() -> None:
    """Write every batch waiting in the spool to the store now."""
    writer = _writer()
    pending = len(writer.spool.pending())
    ok = writer.flush(timeout_s=120)
    left = len(writer.spool.pending())
    out.print(f"wrote {pending - left} batches; {left} left in {writer.spool.dir}")
    if not ok:
        raise typer.Exit(1)


@app.command()
def collector(
    config: Optional[Path] = typer.Option(None, "--config", help="runmeter.toml with a [collector] section (else found as usual)"),
    grpc_endpoint: Optional[str] = typer.Option(None, "--grpc", help="OTLP/gRPC host:port (default 127.0.0.1:4317)"),
    http_endpoint: Optional[str] = typer.Option(None, "--http", help="OTLP/HTTP host:port (default 127.0.0.1:4318)"),
    admin_endpoint: Optional[str] = typer.Option(None, "--admin", help="/healthz, /readyz, /metrics host:port (default 127.0.0.1:8888)"),
    wal_dir: Optional[str] = typer.Option(None, "--wal-dir", help="the write-ahead log's directory"),
    tokens_file: Optional[str] = typer.Option(None, "--tokens-file", help="bearer tokens (TOML); required to listen beyond loopback"),
    allow_unauthenticated: Optional[bool] = typer.Option(
        None, "--allow-unauthenticated", help="listen beyond loopback without tokens (a private network, or an authenticating Collector in front)"),
    tls_cert: Optional[str] = typer.Option(None, "--tls-cert"),
    tls_key: Optional[str] = typer.Option(None, "--tls-key"),
    tls_client_ca: Optional[str] = typer.Option(None, "--tls-client-ca", help="require client certificates signed by this CA (mTLS)"),
    log_format: Optional[str] = typer.Option(None, "--log-format", help="json (default) or text"),
    workers: Optional[str] = typer.Option(
        None, "--workers", help="processes that price and assemble runs, by trace id: auto (one per core, the default) or a number; 0 = in this process"
    ),
) -> None:
    """Receive OTLP from any language, assemble and price runs, write them to ClickHouse.

    Needs the collector extra: pip install 'runmeter[collector]'.
    """
    import logging

    from pydantic import ValidationError

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(str(exc), 2)
    flags = {"grpc_endpoint": grpc_endpoint, "http_endpoint": http_endpoint, "admin_endpoint": admin_endpoint, "wal_dir": wal_dir,
             "tokens_file": tokens_file, "allow_unauthenticated": allow_unauthenticated, "tls_cert": tls_cert, "tls_key": tls_key, "tls_client_ca": tls_client_ca, "log_format": log_format,
             "workers": workers}
    try:
        cs = settings.collector.model_validate({**settings.collector.model_dump(), **{k: v for k, v in flags.items() if v is not None}})
    except ValidationError as exc:
        _fail(f"collector setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", 2)
    try:
        from runmeter.collector import CollectorServer, JsonFormatter, map_large_blocks_apart
        from runmeter.processor import RunLimits
    except ImportError as exc:
        _fail(f"the collector needs its extra ({exc.name} is missing): pip install 'runmeter[collector]'")
    # A long-lived server holding many spans: fewer, cheaper cyclic-GC passes (objects made at start-up
    # are frozen out of them) - measured ~30 % of per-span CPU with the defaults.
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    map_large_blocks_apart()  # RSS within the stated bound after bursts of large requests
    without_dataframes()  # clickhouse-connect would import pandas and numpy here for nothing
    # Receiver threads wait for the interpreter lock while processing threads hold it: hand it over
    # every 0.5 ms instead of 5 ms, so acknowledging a request is not queued behind processing.
    if cs.worker_count() == 0:
        sys.setswitchinterval(0.0005)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if cs.log_format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    url = _State.store_url or settings.storage.clickhouse_url
    try:
        writer = open_writer(url, settings.storage.spool_dir, settings.storage.spool_max_bytes)
        # The collector owns an embedded store: it keeps it 10 s after the last insert and up to 30 s
        # while busy; a report that waits for it gets it after the current insert.
        writer.hold_s, writer.max_hold_s = 10.0, 30.0
        server = CollectorServer(cs, writer, prices=PriceBook(settings.pricing), run_limits=RunLimits.from_settings(settings.runs))
    except (ConfigError, StoreError, OSError, ValueError) as exc:
        _fail(str(exc), 2)
    raise typer.Exit(0 if server.serve_forever() else 1)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="the address to listen on; anything but loopback shows your spend to the network"),
    port: int = typer.Option(8321, "--port", min=0, max=65535, help="0 picks a free port"),
    poll_s: float = typer.Option(3.0, "--poll", min=0.5, max=600, help="seconds between live updates of an open page"),
) -> None:
    """A local web app: Overview, Runs, Run (its tree) and Compare, over the same queries as the reports.

    Needs the ui extra: pip install 'runmeter[ui]'. Listens on 127.0.0.1 unless --host says otherwise.
    """
    try:
        from runmeter.ui import UI, serve
    except ImportError as exc:
        _fail(f"runmeter ui needs its extra ({exc.name} is missing): pip install 'runmeter[ui]'")
    settings = _settings()
    writer = _writer()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {escape(host)}: runmeter ui has no login, so anyone who can reach it sees "
                  "every run and its cost. Put it behind an authenticating proxy.")

    def ready(url: str) -> None:
        out.print(f"runmeter ui: {url}  (store: {escape(writer.store.url.redacted())}; Ctrl-C stops it)", soft_wrap=True)
        out.file.flush()

    try:
        serve(UI(writer, settings, poll_s=poll_s), host, port, ready)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@grafana_app.command("export")
def grafana_export(
    directory: Path = typer.Argument(..., help="where to write dashboards/ and provisioning/"),
    clickhouse_host: str = typer.Option("${RUNMETER_CLICKHOUSE_HOST}", "--clickhouse-host",
                                        help="the data source's ClickHouse host (default: Grafana expands $RUNMETER_CLICKHOUSE_HOST)"),
) -> None:
    """Write the dashboards, the ClickHouse data source and the alert rules as Grafana provisioning files.

    Point Grafana's provisioning path at DIRECTORY/provisioning (GF_PATHS_PROVISIONING); the
    dashboards provider reads DIRECTORY/dashboards.
    """
    from runmeter.grafana import export

    rules = _settings().alerts.rules  # [alerts] in runmeter.toml: Grafana alerts with the same kinds and thresholds
    try:
        written = export(directory, clickhouse_host=clickhouse_host, alert_rules=rules or None)
    except OSError as exc:
        _fail(f"cannot write {directory}: {exc.strerror or exc}")
    for path in written:
        out.print(escape(str(path)), soft_wrap=True)
    err.print(f"wrote {len(written)} files; start Grafana with GF_PATHS_PROVISIONING={escape(str(directory.resolve() / 'provisioning'))}")


@app.command()
def demo() -> None:
    """The demo: example agents against a local LLM simulator (no keys, no network), then the reports.

    Writes .runmeter-demo/ and report.html in the current directory; your .runmeter/ is untouched."""
    from runmeter.demo import main as run_demo

    run_demo()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
