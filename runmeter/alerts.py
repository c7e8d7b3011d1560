"""``[alerts]``: loops, long and abandoned runs, budget breaches, spend limits and unpriced calls,
delivered to a webhook (JSON), a Slack-compatible incoming webhook, or Alertmanager's API.

::

    [[alerts.rules]]
    kind = "loop"                  # loop | long_run | abandoned | budget_breach | spend_limit | unpriced_share
    [[alerts.rules]]
    kind = "long_run"
    threshold_s = 600
    [[alerts.rules]]
    kind = "spend_limit"
    at_pct = [80, 100]             # of each [[limits.spend]]
    [[alerts.rules]]
    kind = "unpriced_share"
    threshold_pct = 5              # of the LLM calls since the last check

    [[alerts.to]]
    type = "slack"                 # webhook | slack | alertmanager
    url = "https://hooks.slack.com/services/..."

*Live* alerts fire in the agent's process as things happen: a loop signal or a budget breach as
the run ledger sees it, a spend limit crossing a level before a call, a long run when it ends.
*Period* alerts come from ``runmeter alerts run`` (one-shot, for cron or the chart's CronJob)
over the store: every run of the window - the collector's too - for loops, breaches, long and
abandoned runs, the spend limits' levels, the unpriced share. Each alert is sent once per rule
and run (or limit and period): live ones remembered in the process, period ones in the
``runmeter_alerts`` table. Delivery never blocks the agent: a bounded queue and one thread, each
POST retried with exponential backoff (urllib3's ``Retry``: connection errors, 429 and 5xx,
``Retry-After`` honoured); what still fails is logged and dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runmeter.core import Thread
from runmeter.processor import Breach, LiveRun, LoopSignal, RunRecord, RunSink, SpendUsage, set_alert_hook

__all__ = ["Alert", "AlertRule", "AlertSettings", "Destination", "LiveAlerts", "Sender", "period_alerts", "payload"]

_log = logging.getLogger(__name__)
_SEVERITY = {"loop": "warning", "long_run": "warning", "abandoned": "info", "budget_breach": "warning",
             "spend_limit": "critical", "unpriced_share": "warning"}


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["loop", "long_run", "abandoned", "budget_breach", "spend_limit", "unpriced_share"]
    threshold_s: float | None = Field(default=None, gt=0)  # long_run
    threshold_pct: float | None = Field(default=None, ge=0, le=100)  # unpriced_share
    at_pct: list[float] = Field(default_factory=lambda: [80.0, 100.0])  # spend_limit

    @model_validator(mode="after")
    def _thresholds(self) -> AlertRule:
        if self.kind == "long_run" and self.threshold_s is None:
            raise ValueError("a long_run rule needs threshold_s (seconds)")
        if self.kind == "unpriced_share" and self.threshold_pct is None:
            raise ValueError("an unpriced_share rule needs threshold_pct (percent of LLM calls)")
        if any(not 0 < p <= 1000 for p in self.at_pct):
            raise ValueError("at_pct: percents of a limit, above 0")
        return self


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["webhook", "slack", "alertmanager"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0, le=120)


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[AlertRule] = Field(default_factory=list)
    to: list[Destination] = Field(default_factory=list)
    retries: int = Field(default=5, ge=0, le=20)
    backoff_s: float = Field(default=0.5, ge=0, le=60)  # the first retry's wait; doubled each time
    queue_max: int = Field(default=1000, ge=1)

    def rule(self, kind: str) -> AlertRule | None:
        return next((r for r in self.rules if r.kind == kind), None)


@dataclass(frozen=True)
class Alert:
    """One alert: ``rule`` and ``key`` make it unique (sent once)."""

    rule: str
    key: str
    summary: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    threshold: float | None = None
    at: float = field(default_factory=time.time)

    @property
    def severity(self) -> str:
        return _SEVERITY.get(self.rule, "warning")


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(kind: str, alert: Alert) -> dict[str, Any] | list[dict[str, Any]]:
    """What a destination of ``kind`` is sent for ``alert``."""
    if kind == "slack":  # an incoming webhook: text (mrkdwn), with the labels as context
        details = ", ".join(f"{k}: {v}" for k, v in sorted(alert.labels.items()))
        return {"text": f":rotating_light: *runmeter {alert.rule}*: {alert.summary}" + (f"\n{details}" if details else "")}
    if kind == "alertmanager":  # POST /api/v2/alerts: postableAlerts
        labels = {"alertname": f"runmeter_{alert.rule}", "severity": alert.severity, "source": "runmeter", **alert.labels}
        annotations = {"summary": alert.summary}
        if alert.value is not None:
            annotations["value"] = f"{alert.value:g}"
        if alert.threshold is not None:
            annotations["threshold"] = f"{alert.threshold:g}"
        return [{"labels": {k: str(v) for k, v in labels.items()}, "annotations": annotations, "startsAt": _iso(alert.at)}]
    return {  # a plain webhook: the alert as JSON
        "source": "runmeter", "rule": alert.rule, "key": alert.key, "severity": alert.severity, "summary": alert.summary,
        "labels": alert.labels, "value": alert.value, "threshold": alert.threshold, "time": _iso(alert.at),
    }


def _url(dest: Destination) -> str:
    if dest.type == "alertmanager" and not dest.url.rstrip("/").endswith("/api/v2/alerts"):
        return dest.url.rstrip("/") + "/api/v2/alerts"
    return dest.url


class Sender:
    """Delivers alerts from one background thread; ``send`` never blocks and never raises."""

    def __init__(self, settings: AlertSettings, on_sent: Callable[[Alert], None] | None = None) -> None:
        import urllib3
        from urllib3.util.retry import Retry

        self.settings = settings
        self._on_sent = on_sent
        retry = Retry(
            total=settings.retries, connect=settings.retries, read=settings.retries, status=settings.retries,
            backoff_factor=settings.backoff_s, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True, raise_on_status=False,
        )
        self._http = urllib3.PoolManager(retries=retry, headers={"Content-Type": "application/json", "User-Agent": "runmeter"})
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=settings.queue_max)
        self._seen: dict[tuple[str, str], None] = {}  # queued once, oldest first
        self._lock = threading.Lock()
        self.sent: list[tuple[str, Alert]] = []  # (destination url, alert), delivered
        self.failed: list[tuple[str, Alert, str]] = []
        self._idle = threading.Event()
        self._idle.set()
        self._thread = Thread(target=self._loop, name="runmeter-alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> bool:
        """Queue ``alert`` unless one with its rule and key was queued already; False when dropped."""
        with self._lock:
            if (alert.rule, alert.key) in self._seen:
                return False
            self._seen[(alert.rule, alert.key)] = None
            if len(self._seen) > 100_000:  # a long-lived process: forget the oldest half
                self._seen = dict.fromkeys(list(self._seen)[50_000:])
        try:
            self._idle.clear()
            self._queue.put_nowait(alert)
            return True
        except queue.Full:
            _log.warning("runmeter: the alert queue is full (%d); %s %s dropped", self.settings.queue_max, alert.rule, alert.key)
            return False

    def _loop(self) -> None:
        while True:
            try:
                alert = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._idle.set()
                continue
            if alert is None:
                self._idle.set()
                return
            delivered = False
            for dest in self.settings.to:
                delivered = self._post(dest, alert) or delivered
            if delivered and self._on_sent is not None:
                try:
                    self._on_sent(alert)
                except Exception as exc:
                    _log.warning("runmeter: could not record alert %s %s as sent: %s", alert.rule, alert.key, exc)
            if self._queue.empty():
                self._idle.set()

    def _post(self, dest: Destination, alert: Alert) -> bool:
        url = _url(dest)
        body = json.dumps(payload(dest.type, alert)).encode()
        try:
            r = self._http.request("POST", url, body=body, headers={**self._http.headers, **dest.headers}, timeout=dest.timeout_s)
            if 200 <= r.status < 300:
                self.sent.append((url, alert))
                return True
            problem = f"HTTP {r.status}"
        except Exception as exc:  # retries spent (urllib3 raises MaxRetryError), or a bad URL
            problem = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        self.failed.append((url, alert, problem))
        _log.warning("runmeter: alert %s for %s not delivered to %s after %d retries: %s",
                     alert.rule, alert.key, _redact_url(url), self.settings.retries, problem)
        return False

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued alert was delivered or given up (tests, a one-shot command)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.wait(0.05) and self._queue.empty():
                return True
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        self.flush(timeout_s)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=1.0)


def _redact_url(url: str) -> str:
    """A Slack webhook's path is its secret: logs show the host only."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


def _run_labels(run: LiveRun | RunRecord | None) -> dict[str, str]:
    if run is None:
        return {}
    if isinstance(run, LiveRun):
        from runmeter.conventions import attributes as A

        s = run.stamp
        got = {"run_id": run.run_id, "run_name": s.get(A.RUNMETER_RUN_NAME), "owner": s.get(A.RUNMETER_RUN_OWNER),
               "project": s.get(A.RUNMETER_RUN_PROJECT)}
    else:
        got = {"run_id": run.run_id, "run_name": run.name, "owner": run.owner, "project": run.project}
    return {k: str(v) for k, v in got.items() if v}


class LiveAlerts(RunSink):
    """Live alerts in an agent's process: the processor's hook, and a run sink in front of the
    store's (long runs, and what a run record says when its run ends)."""

    def __init__(self, settings: AlertSettings, sender: Sender, inner: RunSink | None = None) -> None:
        self.settings = settings
        self.sender = sender
        self.inner = inner

    def hook(self, event: str, run: LiveRun | None, detail: Any) -> None:
        labels = _run_labels(run)
        if event == "loop" and self.settings.rule("loop") and isinstance(detail, LoopSignal):
            self._loop(labels, detail.kind, detail.key, detail.count)
        elif event in ("budget_breach", "spend_limit") and self.settings.rule("budget_breach") and isinstance(detail, Breach):
            self._breach(labels, detail)
        elif event == "spend_limit_usage" and isinstance(detail, SpendUsage):
            self._limit(detail)

    def _loop(self, labels: dict[str, str], kind: str, key: str, count: int) -> None:
        run = labels.get("run_id", "-")
        self.sender.send(Alert("loop", f"{run}", f"run {labels.get('run_name', run)} repeats itself: {kind} {key} × {count}",
                               {**labels, "signal": kind}, float(count)))

    def _breach(self, labels: dict[str, str], b: Breach) -> None:
        run = labels.get("run_id", "-")
        self.sender.send(Alert("budget_breach", f"{run}:{b.limit}",
                               f"run {labels.get('run_name', run)}: {b.limit} {b.value:g} over {b.threshold:g} ({b.action})",
                               {**labels, "limit": b.limit, "action": b.action}, b.value, b.threshold))

    def _limit(self, u: SpendUsage) -> None:
        rule = self.settings.rule("spend_limit")
        if rule is None:
            return
        for alert in limit_alerts(rule, [u]):
            self.sender.send(alert)

    # --- RunSink: every run record, live or not ---------------------------------------------------

    def write_runs(self, records: list[RunRecord]) -> None:
        try:
            for r in records:
                labels = _run_labels(r)
                if self.settings.rule("loop"):
                    for s in r.loop_signals:
                        self._loop(labels, s.kind, s.key, s.count)
                if self.settings.rule("budget_breach"):
                    for b in r.breaches:
                        self._breach(labels, b)
                rule = self.settings.rule("long_run")
                if rule is not None and rule.threshold_s is not None and r.wall_clock_s > rule.threshold_s:
                    self.sender.send(Alert("long_run", r.run_id, f"run {r.name or r.run_id} took {r.wall_clock_s:.0f} s "
                                           f"(over {rule.threshold_s:g} s), ${float(r.cost_usd):.4f}", labels, r.wall_clock_s, rule.threshold_s))
        except Exception as exc:
            _log.warning("runmeter: alerts for run records failed: %s", exc)
        if self.inner is not None:
            self.inner.write_runs(records)

    def write_outcomes(self, events: list[Any]) -> None:
        if self.inner is not None:
            self.inner.write_outcomes(events)

    def close(self) -> None:
        """At exit (the RunProcessor's shutdown, before the exporter's): deliver what is queued,
        waiting at most 5 s; what a receiver that is down has not taken by then is dropped, and said."""
        if not self.sender.flush(5.0):
            _log.warning("runmeter: exiting with alerts not yet delivered (a receiver is slow or down); they are dropped")
        self.sender.close(0.1)
        set_alert_hook(None)
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def limit_alerts(rule: AlertRule, usage: Iterable[SpendUsage]) -> list[Alert]:
    out = []
    for u in usage:
        if not u.limit.max_usd:
            continue
        pct = float(u.spent) / u.limit.max_usd * 100
        crossed = [p for p in sorted(rule.at_pct) if pct >= p]
        if not crossed:
            continue
        level = crossed[-1]
        day = dt.datetime.fromtimestamp(u.since, dt.timezone.utc).date().isoformat() if u.since else "all"
        out.append(Alert(
            "spend_limit", f"{u.limit.name}:{u.value}:{day}:{level:g}",
            f"{u.limit.scope} {u.value} spent ${float(u.spent):.2f} of ${u.limit.max_usd:g} per {u.limit.period} ({pct:.0f} %)",
            {u.limit.scope: u.value, "limit": u.limit.name, "level_pct": f"{level:g}"}, float(u.spent), u.limit.max_usd,
        ))
    return out


def install(settings: AlertSettings, inner: RunSink | None = None, on_sent: Callable[[Alert], None] | None = None) -> LiveAlerts | None:
    """Live alerts in this process; the returned sink goes in front of the store's run sink."""
    if not settings.rules or not settings.to:
        set_alert_hook(None)
        return None
    live = LiveAlerts(settings, Sender(settings, on_sent), inner)
    set_alert_hook(live.hook)
    return live


# --- period alerts: runmeter alerts run ---------------------------------------------------------------


def period_alerts(settings: AlertSettings, client: Any, since: dt.datetime, limits: Any = None,
                  abandoned_after_s: float = 86_400.0) -> list[Alert]:
    """The alerts the store shows for the window since ``since`` (every process's runs)."""
    from runmeter.reports import Filters, run_query

    out: list[Alert] = []
    long_rule = settings.rule("long_run")
    rows = run_query(client, "events", Filters(since=since, abandoned_after_s=int(abandoned_after_s)),
                     long_run_s=float(long_rule.threshold_s if long_rule and long_rule.threshold_s else 10**9), limit=10_000)
    for r in rows:
        labels = {"run_id": r["RunId"], "run_name": r["Name"]}
        at = r["Time"].timestamp() if hasattr(r["Time"], "timestamp") else time.time()
        event = r["Event"]
        if event == "loop" and settings.rule("loop"):
            out.append(Alert("loop", r["RunId"], f"run {r['Name']} repeats itself: {r['Kind']} {r['Detail']}",
                             {**labels, "signal": r["Kind"]}, at=at))
        elif event.startswith("budget_") and settings.rule("budget_breach"):
            out.append(Alert("budget_breach", f"{r['RunId']}:{r['Kind']}", f"run {r['Name']}: {r['Kind']} {r['Detail']}",
                             {**labels, "limit": r["Kind"], "action": "stop" if event == "budget_stop" else "warn"}, at=at))
        elif event == "long_run" and long_rule is not None:
            seconds = float(str(r["Detail"]).split()[0]) if r["Detail"] else None
            out.append(Alert("long_run", r["RunId"], f"run {r['Name']} took {r['Detail']} (over {long_rule.threshold_s:g} s)",
                             labels, seconds, long_rule.threshold_s, at=at))
        elif event == "abandoned" and settings.rule("abandoned"):
            out.append(Alert("abandoned", r["RunId"], f"run {r['Name']} was abandoned: no outcome, ${float(r['CostUsd']):.4f} spent",
                             labels, float(r["CostUsd"]), at=at))
    unpriced = settings.rule("unpriced_share")
    if unpriced is not None and unpriced.threshold_pct is not None:
        (calls, unpriced_calls), = client.query(
            "SELECT count(), countIf(Priced = 0) FROM runmeter_calls WHERE Kind = 'llm' AND Duplicate = 0 "
            "AND Timestamp >= {since:DateTime64(3)}", parameters={"since": since}).result_rows
        share = 100.0 * unpriced_calls / calls if calls else 0.0
        if calls and share > unpriced.threshold_pct:
            hour = since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H")
            out.append(Alert("unpriced_share", f"since {hour}", f"{share:.1f} % of LLM calls unpriced since {since:%Y-%m-%d %H:%M} "
                             f"({unpriced_calls} of {calls}; over {unpriced.threshold_pct:g} %)", {}, share, unpriced.threshold_pct))
    rule = settings.rule("spend_limit")
    if rule is not None and limits is not None:
        from runmeter.limits import query_of, usage_now

        out += limit_alerts(rule, usage_now(limits, query_of(client)))
    return out


def already_sent(client: Any, alerts: Sequence[Alert]) -> set[tuple[str, str]]:
    if not alerts:
        return set()
    rows = client.query("SELECT Rule, Key FROM runmeter_alerts WHERE Key IN {keys:Array(String)}",
                        parameters={"keys": sorted({a.key for a in alerts})}).result_rows
    return {(r, k) for r, k in rows}


def recorder(writer: Any) -> Callable[[Alert], None]:
    """``on_sent`` for live alerts: each delivered one goes to ``runmeter_alerts`` through the
    writer's spool, so ``runmeter alerts run`` does not send it again."""
    from runmeter.exporter import Batch

    def record(alert: Alert) -> None:
        writer.submit(Batch.of({"runmeter_alerts": {"columns": _SENT_COLUMNS, "rows": _sent_rows([alert])}}))

    return record


def record_sent(client: Any, alerts: Sequence[Alert]) -> None:
    if alerts:
        client.insert("runmeter_alerts", _sent_rows(alerts), column_names=_SENT_COLUMNS)


_SENT_COLUMNS = ["Rule", "Key", "Time", "Summary"]  # runmeter_alerts (migration 006)


def _sent_rows(alerts: Sequence[Alert]) -> list[list[Any]]:
    now = time.time_ns()
    return [[a.rule, a.key, now, a.summary] for a in alerts]
