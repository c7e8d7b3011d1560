"""Alerts that reach people: each rule fires once to a webhook receiver on 127.0.0.1 with the
expected payload, a receiver that is down is retried and never holds up the agent, and what is
sent to Alertmanager has the shape its API takes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runmeter.alerts import Alert, AlertRule, AlertSettings, Destination, Sender, payload
from runmeter.exporter import Store

# gpt-4o-mini list prices (USD per million tokens), as published by OpenAI.
IN, OUT = 0.15, 0.60


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps what it is sent; ``fail_first`` answers 503 first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.got: list[tuple[str, Any, dict[str, str]]] = []
        self.attempts = 0
        self._fail = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.attempts += 1
                if outer._fail > 0:
                    outer._fail -= 1
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                outer.got.append((self.path, json.loads(body), dict(self.headers)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


AGENT = """
import json, os, time, openai, runmeter
client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-test")
msgs = [{"role": "user", "content": "the same question"}]
with runmeter.run("looper", owner="ana", project="checkout", budget=runmeter.Budget(max_llm_calls=3, action="warn")):
    for _ in range(4):  # the same input four times: a loop signal at 3; the 4th call breaks max_llm_calls
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    time.sleep(0.6)  # a long run (threshold 0.5 s)
print("done")
"""

TOML = """
[storage]
clickhouse_url = "chdb://{store}"
spool_dir = "{spool}"

[[limits.spend]]
owner = "ana"
max_usd = {limit}
action = "warn"

[[alerts.rules]]
kind = "loop"
[[alerts.rules]]
kind = "budget_breach"
[[alerts.rules]]
kind = "long_run"
threshold_s = 0.5
[[alerts.rules]]
kind = "spend_limit"
at_pct = [80, 100]
[[alerts.rules]]
kind = "abandoned"
[[alerts.rules]]
kind = "unpriced_share"
threshold_pct = 10

[[alerts.to]]
type = "webhook"
url = "{url}/hook"
headers = {{ Authorization = "Bearer hook-secret" }}
"""


def _agent(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from runmeter.testing import Reply, Simulator

    (tmp / "agent.py").write_text(AGENT)
    with Simulator() as sim:
        for _ in range(4):
            sim.queue(Reply(input_tokens=100_000, output_tokens=10_000))  # $0.021 each
        return subprocess.run(
            [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "agent.py"], cwd=tmp, timeout=180,
            env={**os.environ, "SIM_URL": sim.openai_url, "RUNMETER_CONFIG": str(tmp / "runmeter.toml"), "OTEL_TRACES_EXPORTER": "clickhouse",
                 "OTEL_METRICS_EXPORTER": "none", "OTEL_BSP_SCHEDULE_DELAY": "200", **env},
            capture_output=True, text=True,
        )


@pytest.mark.slow
def test_live_alerts_fire_once_each_from_the_agent_and_the_period_run_sends_nothing_twice(tmp_path: Path, receiver: Receiver) -> None:
    # Ana may spend $0.07 a day (warn): 4 calls of $0.021 = $0.084 pass 80 % ($0.056) after the third
    # and 100 % after the fourth.
    (tmp_path / "runmeter.toml").write_text(TOML.format(store=tmp_path / "store", spool=tmp_path / "spool", url=receiver.url, limit=0.07))
    proc = _agent(tmp_path, {})
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr[-3000:]
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for path, body, headers in receiver.got:
        assert path == "/hook" and headers["Authorization"] == "Bearer hook-secret"
        by_rule.setdefault(body["rule"], []).append(body)
    assert sorted(by_rule) == ["budget_breach", "long_run", "loop", "spend_limit"]
    (loop,) = by_rule["loop"]
    assert loop["labels"]["owner"] == "ana" and loop["labels"]["run_name"] == "looper" and loop["labels"]["signal"] == "identical_llm_input"
    assert loop["value"] == 3 and loop["severity"] == "warning" and loop["source"] == "runmeter"
    (breach,) = by_rule["budget_breach"]
    assert breach["labels"]["limit"] == "max_llm_calls" and breach["labels"]["action"] == "warn"
    assert breach["value"] == 4 and breach["threshold"] == 3
    (long_run,) = by_rule["long_run"]
    assert long_run["threshold"] == 0.5 and long_run["value"] > 0.5 and long_run["key"] == loop["key"]  # the run's id
    levels = sorted(b["labels"]["level_pct"] for b in by_rule["spend_limit"])
    assert levels == ["100", "80"]  # each level once, before the call that follows it
    spend = {b["labels"]["level_pct"]: b for b in by_rule["spend_limit"]}
    assert spend["80"]["value"] == pytest.approx(3 * 0.021) and spend["100"]["value"] == pytest.approx(4 * 0.021)
    assert all(b["threshold"] == 0.07 for b in by_rule["spend_limit"])

    # The same day, a cron job: the store shows the same loop, breach, long run and limit levels -
    # already sent by the agent, so nothing goes out again; then a second run sends nothing either.
    before = len(receiver.got)
    for _ in range(2):
        cron = subprocess.run([sys.executable, "-m", "runmeter.cli", "alerts", "run", "--since", "1h"], cwd=tmp_path, timeout=120,
                              env={**os.environ, "RUNMETER_CONFIG": str(tmp_path / "runmeter.toml")}, capture_output=True, text=True)
        assert cron.returncode == 0, cron.stderr[-2000:]
        assert "0 alert(s) sent" in cron.stdout
    assert len(receiver.got) == before


@pytest.mark.slow
def test_period_alerts_for_abandoned_runs_and_the_unpriced_share(tmp_path: Path, receiver: Receiver) -> None:
    """Runs a collector would have written (no agent here), an hour ago, with no outcome since
    (abandoned after 60 s), and 2 of 5 LLM calls of a model with no price (40 % > 10 %): each
    alert sent once by ``runmeter alerts run``, and nothing again by the next run."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from runmeter.exporter import ClickHouseSpanExporter, open_writer
    from runmeter.processor import PriceBook, RunProcessor
    from tests.spans import llm, run_root

    (tmp_path / "runmeter.toml").write_text(
        TOML.format(store=tmp_path / "store", spool=tmp_path / "spool", url=receiver.url, limit=1000) + "\n[runs]\nabandoned_after_s = 60\n"
    )
    exporter = ClickHouseSpanExporter(writer=open_writer(f"chdb://{tmp_path / 'store'}", tmp_path / "spool"), prices=PriceBook())
    processor = RunProcessor(SimpleSpanProcessor(exporter), sink=exporter.run_sink, prices=PriceBook(), mode="remote")
    for span in [
        run_root("stale", 1, trace_id=0xA1, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 10, trace_id=0xA1),
        llm(3, 1, "gpt-4o-mini", 1000, 10, trace_id=0xA1, start_ms=20), llm(4, 1, "mystery-model-x", 1000, 10, trace_id=0xA1, start_ms=40),
        run_root("other", 1, trace_id=0xB1, end_ms=100), llm(2, 1, "mystery-model-x", 500, 5, trace_id=0xB1),
        llm(3, 1, "gpt-4o-mini", 500, 5, trace_id=0xB1, start_ms=30),
    ]:
        processor.on_end(span)
    processor.sweep(final=True)
    assert exporter.force_flush()
    processor.shutdown()
    env = {**os.environ, "RUNMETER_CONFIG": str(tmp_path / "runmeter.toml")}
    runs = [subprocess.run([sys.executable, "-m", "runmeter.cli", "alerts", "run", "--since", "2h"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr[-2000:]
    bodies = [b for _, b, _ in receiver.got]
    assert sorted(b["rule"] for b in bodies) == ["abandoned", "abandoned", "unpriced_share"], json.dumps(bodies)
    unpriced = next(b for b in bodies if b["rule"] == "unpriced_share")
    assert unpriced["value"] == pytest.approx(40.0) and unpriced["threshold"] == 10
    assert sorted(b["labels"]["run_name"] for b in bodies if b["rule"] == "abandoned") == ["other", "stale"]
    assert "0 alert(s) sent, 3 sent before" in runs[1].stdout  # the second run: nothing twice


def test_a_receiver_that_is_down_is_retried_and_never_holds_up_the_caller() -> None:
    flaky = Receiver(fail_first=2)  # 503, 503, then 200
    try:
        settings = AlertSettings(rules=[AlertRule(kind="loop")], to=[Destination(type="webhook", url=flaky.url)], retries=3, backoff_s=0.01)
        sender = Sender(settings)
        t0 = time.monotonic()
        assert sender.send(Alert("loop", "run-1", "a loop"))
        assert not sender.send(Alert("loop", "run-1", "a loop"))  # one alert per rule and run
        assert time.monotonic() - t0 < 0.05  # queued, not sent on the caller's thread
        assert sender.flush(30)
        assert flaky.attempts == 3 and len(flaky.got) == 1
    finally:
        flaky.close()
    # Nothing listening: retried, then given up and logged; the caller never waits.
    down = AlertSettings(rules=[AlertRule(kind="loop")], to=[Destination(type="webhook", url="http://127.0.0.1:9/hook")],
                         retries=2, backoff_s=0.01)
    sender = Sender(down)
    t0 = time.monotonic()
    for i in range(50):
        sender.send(Alert("loop", f"run-{i}", "a loop"))
    assert time.monotonic() - t0 < 0.2
    assert sender.flush(60)
    assert len(sender.failed) == 50 and not sender.sent


@pytest.mark.slow
def test_an_agent_runs_at_full_speed_while_its_alert_receiver_is_down(tmp_path: Path) -> None:
    (tmp_path / "runmeter.toml").write_text(
        TOML.format(store=tmp_path / "store", spool=tmp_path / "spool", url="http://127.0.0.1:9", limit=0.07)
    )
    t0 = time.monotonic()
    proc = _agent(tmp_path, {})
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr[-3000:]
    assert "not delivered" in proc.stderr or "alert" in proc.stderr  # said so, not raised
    assert time.monotonic() - t0 < 60


# Alertmanager's POST /api/v2/alerts body, "postableAlerts" in its published OpenAPI (Swagger 2.0)
# description, prometheus/alertmanager api/v2/openapi.yaml: an array of postableAlert, each an
# object with labels (a labelSet: string values; required), annotations (a labelSet), startsAt and
# endsAt (date-time strings) and generatorURL (a URI). Transcribed here as JSON Schema.
POSTABLE_ALERTS = {
    "type": "array",
    "items": {
        "allOf": [
            {"type": "object", "properties": {
                "startsAt": {"type": "string", "format": "date-time"},
                "endsAt": {"type": "string", "format": "date-time"},
                "annotations": {"$ref": "#/definitions/labelSet"},
            }},
            {"$ref": "#/definitions/alert"},
        ]
    },
    "definitions": {
        "alert": {"type": "object", "properties": {"labels": {"$ref": "#/definitions/labelSet"},
                                                   "generatorURL": {"type": "string", "format": "uri"}}, "required": ["labels"]},
        "labelSet": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def test_alertmanager_payload_has_the_shape_of_its_api_and_slack_gets_text() -> None:
    alert = Alert("spend_limit", "spend.owner=ana.day:ana:2026-11-25:80", "owner ana spent $42.00 of $50 per day (84 %)",
                  {"owner": "ana", "limit": "spend.owner=ana.day", "level_pct": "80"}, 42.0, 50.0, at=1_764_028_800.0)
    body = payload("alertmanager", alert)
    jsonschema.validate(body, POSTABLE_ALERTS)
    (only,) = body  # type: ignore[misc]
    assert only["labels"] == {"alertname": "runmeter_spend_limit", "severity": "critical", "source": "runmeter",
                              "owner": "ana", "limit": "spend.owner=ana.day", "level_pct": "80"}
    assert dt.datetime.fromisoformat(only["startsAt"].replace("Z", "+00:00")).timestamp() == 1_764_028_800.0
    assert only["annotations"]["summary"].startswith("owner ana spent $42.00")
    slack = payload("slack", alert)
    assert set(slack) == {"text"} and "spend_limit" in slack["text"] and "owner: ana" in slack["text"]  # type: ignore[operator]


def test_alert_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold_s"):
        AlertRule(kind="long_run")
    with pytest.raises(ValueError, match="threshold_pct"):
        AlertRule(kind="unpriced_share")
    with pytest.raises(ValueError):
        Destination(type="webhook", url="file:///etc/passwd")


def test_a_long_lived_sender_forgets_its_oldest_alerts_first() -> None:
    """Past 100,000 alerts sent once, the sender forgets the oldest half: the newest are still
    refused as repeats, the first are sendable again (no destination: nothing leaves the process)."""
    sender = Sender(AlertSettings(queue_max=200_000))
    try:
        for i in range(100_001):
            assert sender.send(Alert("loop", f"run-{i}", "s"))
        assert not sender.send(Alert("loop", "run-100000", "s"))  # the newest: still known
        assert not sender.send(Alert("loop", "run-60000", "s"))
        assert sender.send(Alert("loop", "run-0", "s"))  # the oldest: forgotten
    finally:
        sender.close(5)
