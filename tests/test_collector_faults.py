"""The collector under faults and attacks: auth, TLS, a full log, ClickHouse down, SIGKILL, replay."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
import trustme
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from runmeter.exporter import Store
from tests.chhttp import ClickHouseHTTP
from tests.collector_rig import Subprocess, free_ports, mini_cost, post, request_bytes, running
from tests.spans import RESOURCE, llm, run_root
from tests.test_collector import EXPORT, _grpc_call, _run, _runs

RUN_COST = mini_cost(3000, 150)


def _tokens(tmp: Path) -> Path:
    path = tmp / "tokens.toml"
    digest = hashlib.sha256(b"alpha-secret").hexdigest()
    path.write_text(
        f'[[tokens]]\nname = "team-alpha"\nsha256 = "{digest}"\nproject = "alpha"\n\n'
        '[[tokens]]\nname = "platform"\ntoken = "ops-secret"\n'
    )
    return path


def test_tokens_no_token_wrong_token_and_a_token_bound_to_a_project(tmp_path: Path) -> None:
    with running(tmp_path, tokens_file=str(_tokens(tmp_path))) as c:
        body = request_bytes(_run(0x51))
        assert post(c.http, body)[0] == 401
        assert post(c.http, body, {"Authorization": "Bearer nope"})[0] == 401
        assert _grpc_call(c.grpc, body)[0] is grpc.StatusCode.UNAUTHENTICATED
        assert _grpc_call(c.grpc, body, (("authorization", "Bearer nope"),))[0] is grpc.StatusCode.UNAUTHENTICATED
        # The project-bound token: spans are stamped with its project...
        alpha = GrpcExporter(endpoint=c.grpc, insecure=True, headers={"authorization": "Bearer alpha-secret"})
        assert alpha.export(_run(0x52)) is SpanExportResult.SUCCESS
        alpha.shutdown()
        # ...and may not claim another: the root naming project beta is rejected, its children are stamped alpha.
        status, raw, _ = post(c.http, request_bytes(_run(0x53, project="beta")), {"Authorization": "Bearer alpha-secret"})
        partial = ExportTraceServiceResponse.FromString(raw).partial_success
        assert status == 200 and partial.rejected_spans == 1 and "may not send" in partial.error_message
        # A token bound to no project sends any.
        ops = HttpExporter(endpoint=c.http, headers={"Authorization": "Bearer ops-secret"})
        assert ops.export(_run(0x54, project="beta")) is SpanExportResult.SUCCESS
        ops.shutdown()
        runs = _runs(c, [0x51, 0x52, 0x54])
        assert runs == {f"{0x52:032x}": (pytest.approx(RUN_COST), 2, "alpha"), f"{0x54:032x}": (pytest.approx(RUN_COST), 2, "beta")}
        assert c.rows(f"SELECT DISTINCT Project FROM runmeter_calls WHERE TraceId = '{0x53:032x}'") == [("alpha",)]
        assert c.rows(f"SELECT count() FROM otel_traces WHERE TraceId = '{0x53:032x}'") == [(2,)]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls_and_mutual_tls_on_both_ports(tmp_path: Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`, which is how the
    # OTLP/HTTP exporter passes certificate_file: with them set, the test CA would be ignored.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("agent@example.com")
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(client_cert))
    client.private_key_pem.write_to_path(str(client_key))

    with running(tmp_path / "tls", tls_cert=str(cert), tls_key=str(key)) as c:
        g = GrpcExporter(endpoint=f"localhost:{c.server.ports['grpc']}", credentials=grpc.ssl_channel_credentials(ca.cert_pem.bytes()))
        h = HttpExporter(endpoint=f"https://localhost:{c.server.ports['http']}/v1/traces", certificate_file=str(ca_file))
        assert g.export(_run(0x61)) is SpanExportResult.SUCCESS
        assert h.export(_run(0x62)) is SpanExportResult.SUCCESS
        g.shutdown()
        h.shutdown()
        with pytest.raises(ConnectionError):  # plain HTTP to the TLS port
            post(c.http, request_bytes(_run(0x63)))
        assert len(_runs(c, [0x61, 0x62, 0x63])) == 2

    with running(tmp_path / "mtls", tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(ca_file)) as c:
        creds = grpc.ssl_channel_credentials(ca.cert_pem.bytes(), client.private_key_pem.bytes(), client.cert_chain_pems[0].bytes())
        g = GrpcExporter(endpoint=f"localhost:{c.server.ports['grpc']}", credentials=creds)
        h = HttpExporter(endpoint=f"https://localhost:{c.server.ports['http']}/v1/traces", certificate_file=str(ca_file),
                         client_certificate_file=str(client_cert), client_key_file=str(client_key))
        assert g.export(_run(0x64)) is SpanExportResult.SUCCESS
        assert h.export(_run(0x65)) is SpanExportResult.SUCCESS
        g.shutdown()
        h.shutdown()
        # Without a client certificate the handshake fails.
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(ca_file))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(urllib.request.Request(f"https://localhost:{c.server.ports['http']}/v1/traces",
                                                          data=request_bytes(_run(0x66)), method="POST"), context=ctx, timeout=10).read()
        with grpc.secure_channel(f"localhost:{c.server.ports['grpc']}", grpc.ssl_channel_credentials(ca.cert_pem.bytes())) as ch:
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary(EXPORT)(request_bytes(_run(0x67)), timeout=10)
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert len(_runs(c, [0x64, 0x65, 0x66, 0x67])) == 2


def test_a_full_log_refuses_retryably_until_processing_catches_up(tmp_path: Path) -> None:
    # Runs held open (quiet for 60 s) keep their log records: the log fills.
    body = request_bytes(_run(0x71))
    with running(tmp_path, quiet_s=60, wal_max_bytes=4 * len(body)) as c:
        answers = [post(c.http, request_bytes(_run(0x7100 + i))) for i in range(6)]
        assert [a[0] for a in answers[:3]] == [200, 200, 200]
        refused = [a for a in answers if a[0] == 429]
        assert refused and all(a[2]["Retry-After"] == "5" for a in refused)
        code, _, call = _grpc_call(c.grpc, body)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(call.trailing_metadata())["grpc-status-details-bin"]  # type: ignore[union-attr]
        info = error_details_pb2.RetryInfo()
        assert status_pb2.Status.FromString(details).details[0].Unpack(info) and info.retry_delay.seconds == 5
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(c.admin + "/readyz")
        assert not_ready.value.code == 503
        # The runs complete (here: forced), the log is released, requests are taken again.
        accepted = [0x7100 + i for i, a in enumerate(answers) if a[0] == 200]
        assert len(_runs(c, accepted)) == len(accepted)
        assert post(c.http, body)[0] == 200
        assert _runs(c, [0x71])[f"{0x71:032x}"][0] == pytest.approx(RUN_COST)
        # Refused and acknowledged requests alike are no longer in flight: processing runs at full speed.
        assert c.server.collector.requests_in_flight == 0


def test_clickhouse_down_then_back_loses_and_doubles_nothing(tmp_path: Path) -> None:
    ch = ClickHouseHTTP(str(tmp_path / "engine")).up()
    try:
        with running(tmp_path, store_url=ch.url) as c:
            c.rows("SELECT 1")  # migrations applied while it is up
            ch.down()
            exp = GrpcExporter(endpoint=c.grpc, insecure=True)
            for t in range(0x81, 0x86):
                assert exp.export(_run(t)) is SpanExportResult.SUCCESS  # acknowledged while ClickHouse is down
            exp.shutdown()
            time.sleep(1.0)  # the writer meets the outage and backs off
            ch.up()
            ids = list(range(0x81, 0x86))
            runs = _runs(c, ids)
            assert len(runs) == 5 and all(r[0] == pytest.approx(RUN_COST) for r in runs.values())
            in_list = ", ".join(f"'{t:032x}'" for t in ids)
            assert c.rows(f"SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces WHERE TraceId IN ({in_list})") == [(15, 15)]
            assert c.rows(f"SELECT count(), sum(CostUsd) FROM runmeter_calls WHERE TraceId IN ({in_list})")[0][0] == 10
    finally:
        ch.close()


def test_replay_after_a_lost_checkpoint_writes_nothing_twice(tmp_path: Path) -> None:
    ids = [0x91, 0x92, 0x93]
    with running(tmp_path) as c:
        exp = GrpcExporter(endpoint=c.grpc, insecure=True)
        for t in ids:
            exp.export(_run(t))
        exp.shutdown()
        assert len(_runs(c, ids)) == 3
    # As if the process died after writing but before its checkpoint: every record is replayed; and
    # died between the two inserts of a batch for one trace: its spans are in otel_traces, its calls not.
    (tmp_path / "wal" / "checkpoint").write_text("0")
    store = Store(f"chdb://{tmp_path / 'store'}")
    with store.session() as client:
        client.command(f"DELETE FROM runmeter_calls WHERE TraceId = '{0x92:032x}'")
    store.close()
    with running(tmp_path) as c:
        assert c.server.collector.replayed.wait(30)
        in_list = ", ".join(f"'{t:032x}'" for t in ids)
        assert c.rows(f"SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces WHERE TraceId IN ({in_list})") == [(9, 9)]
        assert c.rows(f"SELECT count() FROM runmeter_calls WHERE TraceId IN ({in_list})") == [(6,)]
        runs = _runs(c, ids)
        assert len(runs) == 3 and all(r[0] == pytest.approx(RUN_COST) for r in runs.values())


def _three_call_run(t: int) -> list:  # type: ignore[type-arg]
    return [run_root("job", 1, trace_id=t, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=t),
            llm(3, 1, "gpt-4o-mini", 2000, 50, trace_id=t, start_ms=40)]


def _stored_once(store: str, ids: list[int]) -> tuple[list[tuple[int, int]], list[tuple[int, float]], list[tuple[int, float]]]:
    s = Store(store)
    in_list = ", ".join(f"'{t:032x}'" for t in ids)
    with s.session() as client:
        spans = client.query(f"SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces WHERE TraceId IN ({in_list})").result_rows
        calls = client.query(f"SELECT count(), sum(CostUsd) FROM runmeter_calls WHERE TraceId IN ({in_list}) AND NOT Duplicate").result_rows
        runs = client.query(f"SELECT count(), sum(CostUsd) FROM runmeter_runs FINAL WHERE TraceId IN ({in_list})").result_rows
    s.close()
    return spans, calls, runs


def _gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _live_workers(proc: Subprocess, *gone: int) -> list[int]:
    """The collector's workers that are running (not zombies), leaving out ``gone``."""
    return [p for p in proc.worker_pids() if _state(p) != "(Z)" and p not in gone]


def _state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] + ")"
    except OSError:
        return "(gone)"


@pytest.mark.slow
def test_sigkill_of_a_worker_loses_nothing_and_writes_nothing_twice(tmp_path: Path) -> None:
    """A worker process killed while it processes (the OOM killer, an operator): the collector
    starts it again with the log records it had not written; the spans of those traces it had
    already written are not written again. Requests keep being acknowledged meanwhile."""
    store = f"chdb://{tmp_path / 'store'}"
    ports = dict(zip(("grpc", "http", "admin"), free_ports(3)))
    proc = Subprocess(tmp_path, store, ports, workers=2).start()
    workers = proc.worker_pids()
    assert len(workers) == 2
    exp = GrpcExporter(endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True)
    ids = list(range(0xB000, 0xB000 + 60))
    for i, t in enumerate(ids):
        assert exp.export(_three_call_run(t)) is SpanExportResult.SUCCESS  # acknowledged, worker or not
        if i in (20, 40):  # a worker; then the one started in its place, as soon as it is there
            deadline = time.monotonic() + 30
            while len(live := _live_workers(proc)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            victim = workers[0] if i == 20 else next(p for p in live if p not in workers)
            os.kill(victim, signal.SIGKILL)
            assert _gone([victim])
    exp.shutdown()
    deadline = time.monotonic() + 30
    while len(live := _live_workers(proc, victim)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the second victim's replacement is started after a back-off: wait for it
    assert len(live) == 2 and workers[0] not in live  # started again
    # ...at the priority of the first ones (a replacement is spawned by a thread at the workers'
    # nice value: relative to it, it went to 19 and crawled through its start on a busy host)
    deadline = time.monotonic() + 60
    while any(len(os.listdir(f"/proc/{p}/task")) < 2 for p in live) and time.monotonic() < deadline:
        time.sleep(0.05)  # until each has set its priority and started its pipeline's threads
    assert proc.proc is not None
    nice = min(19, os.getpriority(os.PRIO_PROCESS, proc.proc.pid) + 10)  # worker_nice's default
    print("NICE", nice, [os.getpriority(os.PRIO_PROCESS, p) for p in live]); assert [os.getpriority(os.PRIO_PROCESS, p) for p in live] == [nice, nice]
    assert proc.terminate() == 0
    spans, calls, runs = _stored_once(store, ids)
    assert spans == [(180, 180)]
    assert calls[0][0] == 120 and calls[0][1] == pytest.approx(60 * RUN_COST)
    assert runs[0][0] == 60 and runs[0][1] == pytest.approx(60 * RUN_COST)
    assert "exited" in (tmp_path / "collector.log").read_text()  # said so


@pytest.mark.slow
@pytest.mark.parametrize(("kill_after_s", "workers"), [(0.0, 2), (0.7, 2), (1.2, 2), (0.7, 0)])
def test_sigkill_after_acknowledging_then_restart_stores_each_span_once(tmp_path: Path, kill_after_s: float, workers: int) -> None:
    """The collector's process killed (workers or not): its workers exit with it, and the next
    start replays the log and stores each acknowledged span once."""
    store = f"chdb://{tmp_path / 'store'}"
    ports = dict(zip(("grpc", "http", "admin"), free_ports(3)))
    proc = Subprocess(tmp_path, store, ports, workers=workers).start()
    pids = proc.worker_pids()
    assert len(pids) == workers
    exp = GrpcExporter(endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True)
    ids = list(range(0xA000, 0xA000 + 20))
    for t in ids:
        spans = [run_root("job", 1, trace_id=t, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=t),
                 llm(3, 1, "gpt-4o-mini", 2000, 50, trace_id=t, start_ms=40)]
        assert all(s.resource is RESOURCE for s in spans)
        assert exp.export(spans) is SpanExportResult.SUCCESS  # acknowledged
    exp.shutdown()
    time.sleep(kill_after_s)
    proc.kill()
    assert _gone(pids)  # the workers see their pipe close and exit
    proc.start()  # replays the log
    assert proc.terminate() == 0  # SIGTERM: drains and exits cleanly
    spans, calls, runs = _stored_once(store, ids)
    assert spans == [(60, 60)]
    assert calls[0][0] == 40 and calls[0][1] == pytest.approx(20 * RUN_COST)
    assert runs[0][0] == 20 and runs[0][1] == pytest.approx(20 * RUN_COST)
