"""Collector ingest, in one run: the floors, the collector with one and two worker processes, the
Python SDK's own OTLP pipeline, and the CPU per span by stage.

* bare decode: ``ExportTraceServiceRequest.ParseFromString`` over the pre-serialized requests;
* three floors, with the same load generator (another process): a grpcio server that acknowledges
  at once, one that parses each request before acknowledging - what a Python receiver can reach
  here before it checks or logs anything - and one that parses it and puts it on disk first
  (group commit: one ``writev`` and one ``fdatasync`` for the requests waiting, on the file system
  of the collector's log), the least a durable acknowledgement costs (each the median of three
  sends of the load);
* acknowledged: the load generator sends the same requests over OTLP/gRPC to ``runmeter
  collector`` (a subprocess: received, checked, logged with fsync, acknowledged); and once a round
  for each worker count with its workers paused (``SIGSTOP``) while the load is sent - the
  receiver alone - then let go (everything stored and checked as in the other runs); while they
  process that backlog, the durable floor is sent the same load: the floor with the cores shared
  with the processing of the spans, as the collector's receiver has them. The parsing and durable
  floors are sent the load again each round, and each share of the parsing floor printed is the
  median of the rounds' own shares (the machine's speed drifts by a fifth over minutes here). From
  the parsing floor to the acknowledged rate is printed in three steps, each measured in the run:
  making each request durable, the collector's own receiving, sharing the cores with its workers;
* end-to-end: from the first request until every span is in chDB (``spans.written`` reaches the
  total and ``store.lag`` is 0); then, after a graceful stop, every stored run is checked whole
  and its cost against list prices. The default load (480 requests of 512 spans, ~14 s with one
  worker) measures the rate a worker keeps up: in a run of 120 requests, ~3 s, the start and the
  ``quiet_s`` tail (~1 s whatever the worker count) were a third of a two-worker run;
* CPU per span on the collector path: user+system time of the collector's process and its
  workers (``/proc``) over the end-to-end run, divided by the spans, split by thread (the
  interpreters', chDB's inserting and merging, gRPC's); and the same path by stage,
  measured in this process on one core (the receiver's check on the bytes in C, and the Python
  check it falls back to; the workers' read of the bytes in C into spans, and protobuf's parse and
  convert it falls back to; price and assemble, rows of the three tables, Native encoding with
  clickhouse-connect's Python and rust codecs and with the block writer in C the workers use, the
  chDB insert);
* the floors under those stages, in the same run: every field and attribute of every span read
  once into an ``otel_traces`` row (no checks, no runmeter logic), those rows encoded and
  inserted - the least any collector written in Python pays per span; and, from the check and
  the log, the ceiling on acknowledging as a share of the parsing floor;
* the Python SDK pipeline: spans made with the SDK through its default ``BatchSpanProcessor`` and
  OTLP/gRPC exporter to the same collector, spans delivered per second;
* the host's own two-core scaling, each round: the same CPU-bound Python work in one process, then
  in two at once (a VM's two vCPUs need not be two whole cores); the two-worker ceiling is printed
  at it;
* the production set-up, with the most workers: the same load sent with a token bound to a project
  (the receiver parses each request and asks the store who owns each trace it has not seen),
  acknowledged and end to end, beside the same without the token (``--no-project-token`` skips it).

The collector runs ``--rounds`` times (3) for each worker count, the counts taking turns; what is
printed is the rounds' medians (the two-worker ratio: the median of each round's ratio), and
"none missing" / "correct" hold in every round.

Targets (#20): acknowledged >= 80 % of the parsing floor; end-to-end >= 3x the SDK pipeline, and
>= 1.7x the one-worker figure with two workers; <= 35 us of CPU per span.

    .venv-bench/bin/python benchmarks/collector_ingest.py [--requests 480] [--spans 512] [--workers 1,2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.collector_rig import Subprocess, free_ports  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# gpt-4o-mini list prices, USD per million tokens (OpenAI's price page): each benchmark run's five
# calls take 1000*k input and 100+k output tokens, k = 1..5.
RUN_COST = (sum(1000 * k for k in range(1, 6)) * 0.15 + sum(100 + k for k in range(1, 6)) * 0.60) / 1e6
RESOURCE = Resource.create({"service.name": "bench-agent"})


def _spin(n: int) -> float:
    """Python work like a worker's (dict stores, small strings), n steps: its wall-clock seconds."""
    seen: dict[int, str] = {}
    t0 = time.perf_counter()
    for i in range(n):
        seen[i & 1023] = str(i)
    return time.perf_counter() - t0


def host_scaling(pairs: int = 5, step_s: float = 0.25) -> float:
    """The host's own two-core scaling: the same CPU-bound Python work in one process, then in two
    at once, ``pairs`` times taking turns; the median of each pair's 2 x one / the slower of two.
    2.0 is two whole cores; less, cores that slow each other down (a VM's vCPUs sharing a
    physical core, or its neighbours), which no collector can scale past."""
    ctx = mp.get_context("spawn")  # not forked from a process that has used gRPC
    with ctx.Pool(2) as pool:
        pool.map(_spin, [10_000, 10_000], chunksize=1)  # both started
        per_s = 200_000 / pool.apply(_spin, (200_000,))
        n = max(10_000, int(per_s * step_s))
        ratios = []
        for _ in range(pairs):
            alone = pool.apply(_spin, (n,))
            both = max(pool.map(_spin, [n, n], chunksize=1))
            ratios.append(2 * alone / both)
    return statistics.median(ratios)


def make_requests(n_requests: int, spans_per_request: int) -> list[bytes]:
    """Agent traces of 8 spans (a root, 5 chat calls, 2 tool calls), in requests of the given size."""
    base = (int(time.time()) - 600) * 10**9
    out = []
    trace = 0
    for r in range(n_requests):
        spans = []
        for i in range(spans_per_request):
            if i % 8 == 0:
                trace += 1
            k = i % 8
            ctx = SpanContext(trace, k + 1, False, TraceFlags(1))
            parent = None if k == 0 else SpanContext(trace, 1, False, TraceFlags(1))
            if k == 0:
                name, attrs, kind = "invoke_agent bench", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bench"}, SpanKind.INTERNAL
            elif k < 6:
                name, kind = "chat gpt-4o-mini", SpanKind.CLIENT
                attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                         "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 1000 * k,
                         "gen_ai.usage.output_tokens": 100 + k, "gen_ai.response.finish_reasons": ("stop",), "server.address": "api.openai.com"}
            else:
                name, kind = "execute_tool read_file", SpanKind.INTERNAL
                attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "read_file"}
            start = base + r * 1000 + i
            spans.append(ReadableSpan(name=name, context=ctx, parent=parent, resource=RESOURCE, attributes=attrs, kind=kind,
                                      start_time=start, end_time=start + 5_000_000))
        out.append(encode_spans(spans).SerializeToString())
    return out


def bare_decode(requests: list[bytes], spans_per_request: int, rounds: int = 5) -> float:
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for data in requests:
            ExportTraceServiceRequest.FromString(data)
        rates.append(len(requests) * spans_per_request / (time.perf_counter() - t0))
    return statistics.median(rates)


def _load(port: int, requests: list[bytes], threads: int, out: mp.Queue, token: str | None = None) -> None:  # type: ignore[type-arg]
    import grpc

    metadata = (("authorization", f"Bearer {token}"),) if token else ()

    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        export = ch.unary_unary(EXPORT)

        def send(data: bytes) -> None:
            delay = 0.05
            while True:
                try:
                    export(data, timeout=60, metadata=metadata)
                    return
                except grpc.RpcError as err:  # backpressure: retry, as OTLP clients do
                    if err.code() not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)

        first, t0, cpu0 = time.time(), time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(send, requests))
        out.put((first, time.perf_counter() - t0, time.process_time() - cpu0))


def _floor_server(port: int, parse: bool, log_dir: str | None = None) -> None:
    """A gRPC OTLP server that acknowledges at once (``parse``: after parsing the request): the most
    a Python grpcio receiver can acknowledge here, with the load generator on the same cores.

    ``log_dir``: and after the request is on disk there too - the least a durable acknowledgement
    costs: one thread appends every request waiting at that moment with one ``writev`` and makes
    them durable with one ``fdatasync`` (group commit, as the collector's log does), on the same
    file system as the collector's log (the benchmark's temporary directory)."""
    import threading

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    waiting: list[tuple[bytes, threading.Event]] = []
    cond = threading.Condition()

    def log_writer(fd: int) -> None:
        nonlocal waiting
        while True:
            with cond:
                while not waiting:
                    cond.wait()
                group, waiting = waiting, []
            os.writev(fd, [data for data, _ in group])  # a regular file takes it whole (or raises)
            os.fdatasync(fd)
            for _, done in group:
                done.set()

    if log_dir is not None:
        fd = os.open(os.path.join(log_dir, "floor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        threading.Thread(target=log_writer, args=(fd,), daemon=True).start()

    def export(data: bytes, context: object) -> ExportTraceServiceResponse:
        if parse:
            ExportTraceServiceRequest.FromString(data)
        if log_dir is not None:
            done = threading.Event()
            with cond:
                waiting.append((data, done))
                cond.notify()
            done.wait()
        return ExportTraceServiceResponse()

    service = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
    handler = grpc.method_handlers_generic_handler(
        service, {"Export": grpc.unary_unary_rpc_method_handler(export, response_serializer=ExportTraceServiceResponse.SerializeToString)}
    )
    server = grpc.server(ThreadPoolExecutor(16), handlers=[handler], options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


@contextmanager
def floor_server(parse: bool, log: bool = False) -> Iterator[int]:
    """A floor server (``_floor_server``) in its own process while the block runs; yields its port."""
    ctx = mp.get_context("spawn")
    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory() as log_dir:
        server = ctx.Process(target=_floor_server, args=(port, parse, log_dir if log else None), daemon=True)
        server.start()
        try:
            import grpc

            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                grpc.channel_ready_future(ch).result(timeout=30)
            yield port
        finally:
            server.kill()
            server.join()


def send_load(port: int, requests: list[bytes], threads: int) -> float:
    """The load sent once from its own process; the seconds from its first request to its last answer."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    gen = ctx.Process(target=_load, args=(port, requests, threads, q))
    gen.start()
    _, elapsed, _ = q.get(timeout=600)
    gen.join()
    return float(elapsed)


def floor_rate(requests: list[bytes], spans_per_request: int, threads: int, parse: bool, rounds: int = 3, log: bool = False) -> float:
    """The median of ``rounds`` sends of the load to one floor server (a burst is a second or less:
    one alone moves ±20 % on this machine); ``log``: the floor that also makes each request durable."""
    with floor_server(parse, log) as port:
        return statistics.median(len(requests) * spans_per_request / send_load(port, requests, threads) for _ in range(rounds))


def _metrics(admin: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("runmeter_collector_"):
                name, _, value = line.rpartition(" ")
                key = name.split("{")[0]
                out[key] = out.get(key, 0.0) + float(value)
    return out


_TOKEN = "bench-project-token"


def start_collector(tmp: Path, workers: int, project: str | None = None) -> tuple[Subprocess, dict[str, int]]:
    """``runmeter collector`` as a subprocess over chDB in ``tmp`` (the tests' harness), once ready;
    ``project``: with a tokens file whose one token (``_TOKEN``) is bound to that project."""
    ports = dict(zip(("grpc", "http", "admin"), free_ports(3)))
    proc = Subprocess(tmp, f"chdb://{tmp / 'store'}", ports, quiet_s=0.5, workers=workers)
    if project is not None:
        import hashlib

        tokens = tmp / "tokens.toml"
        tokens.write_text(f'[[tokens]]\nname = "bench"\nsha256 = "{hashlib.sha256(_TOKEN.encode()).hexdigest()}"\nproject = "{project}"\n')
        config = tmp / "runmeter.toml"
        config.write_text(config.read_text().replace("[collector]\n", f'[collector]\ntokens_file = "{tokens}"\n'))
    proc.start()
    deadline = time.monotonic() + 60
    while workers and len(proc.worker_pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, ports


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (/proc/<pid>/stat, in clock ticks)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def thread_cpu(pids: list[int], by_name: bool = False) -> dict[tuple[int, str], float]:
    """User + system CPU so far of each process's threads, summed by (pid, kind): ``inserts`` for
    the interpreter's threads that insert into chDB (the workers' blocks, the writer's run records:
    chDB runs an insert's pipeline on the calling thread; the workers' relayed metrics are recorded
    there too), ``python`` for its other threads (the main one keeps the process's name, runmeter's
    are named ``runmeter-...`` or ``rm-...``: ``runmeter.core.Thread``), ``merges`` for chDB's
    background merges, ``store`` for chDB's other threads, and ``grpc`` for gRPC's own. ``by_name``: the interpreter's threads by their name instead (a
    worker's number and a pool thread's taken out). Threads that ended in between are not in it
    (``cpu_seconds`` has them)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[int, str], float] = {}
    for pid in pids:
        try:
            main = Path(f"/proc/{pid}/comm").read_text().strip()
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue  # the thread ended
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat.rpartition(")")[2].split()
            ours = name == main or name.startswith(("runmeter-", "rm-"))
            if by_name:
                if not ours:
                    continue
                kind = "main" if name == main else re.sub(r"[-_]?\d+", "", name.replace("runmeter-", "").replace("rm-", ""))
            else:
                # The threads that insert into chDB (the workers' blocks, the writer's run records):
                # chDB runs an insert's pipeline on the calling thread (and renames it meanwhile).
                inserts = ours and ("-cal" in name or name == "runmeter-writer")
                kind = ("inserts" if inserts else "python" if ours else "merges" if name.startswith("MergeMutate")
                        else "grpc" if name.startswith(("event_engine", "grpc", "default-executo", "resolver")) else "store")
            out[(pid, kind)] = out.get((pid, kind), 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def sdk_pipeline(port: int, spans: int) -> tuple[float, int]:
    """The Python SDK's default pipeline: spans made, BatchSpanProcessor, OTLP/gRPC exporter."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

    delivered = 0

    class Counting(OTLPSpanExporter):
        def export(self, batch):  # type: ignore[no-untyped-def]
            nonlocal delivered
            result = super().export(batch)
            if result is SpanExportResult.SUCCESS:
                delivered += len(batch)
            return result

    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(BatchSpanProcessor(Counting(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("bench")
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
             "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}
    t0 = time.perf_counter()
    for i in range(spans // 8):
        with tracer.start_as_current_span("invoke_agent bench", attributes={"gen_ai.operation.name": "invoke_agent"}):
            for _ in range(7):
                with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attrs):
                    pass
    provider.force_flush(120_000)
    elapsed = time.perf_counter() - t0
    provider.shutdown()
    return delivered / elapsed, spans - delivered


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=480)
    ap.add_argument("--spans", type=int, default=512, help="spans per request")
    ap.add_argument("--threads", type=int, default=8, help="concurrent requests from the load generator")
    ap.add_argument("--max-concurrent-requests", type=int, default=None,
                    help="the collector's max_concurrent_requests (its default unless given): requests taken in at once; "
                         "past it gRPC answers RESOURCE_EXHAUSTED and the load generator backs off and sends again")
    ap.add_argument("--workers", default="1,2", help="worker process counts to run the collector with, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each worker count, taking turns; medians are printed")
    ap.add_argument("--no-project-token", dest="project_token", action="store_false",
                    help="skip the run with a token bound to a project (the production set-up: ownership looked up per new trace)")
    args = ap.parse_args()
    if args.max_concurrent_requests is not None:  # the collector subprocess reads its settings from the environment too
        os.environ["RUNMETER_COLLECTOR_MAX_CONCURRENT_REQUESTS"] = str(args.max_concurrent_requests)
    if args.spans % 8:
        ap.error("--spans must be a multiple of 8 (whole runs of 8 spans per request)")
    total = args.requests * args.spans
    # Every trace of the load arrives within a second or two: past runs.max_open_runs open at once
    # (10,000 by default, at quiet_s) the oldest would be cut, so a longer run is given room for all
    # of them, as a user sizes the bound for their rate (docs/collector.md, "Memory").
    os.environ["RUNMETER_MAX_OPEN_RUNS"] = str(max(10_000, total // 8))
    requests = make_requests(args.requests, args.spans)
    decode = bare_decode(requests, args.spans)
    print(f"{total} spans in {args.requests} requests of {args.spans} ({sum(map(len, requests)) / 2**20:.1f} MiB)")
    from runmeter.collector import CollectorSettings

    intake = args.max_concurrent_requests or CollectorSettings().max_concurrent_requests
    queued = CollectorSettings().max_queued_requests
    print(f"the load generator sends {args.threads} requests at a time; the collector reads {intake} at once "
          f"(max_concurrent_requests) and keeps up to {queued} more waiting (max_queued_requests), the floors take all of them")
    print(f"bare protobuf decode           {decode:12,.0f} spans/s")
    null = floor_rate(requests, args.spans, args.threads, parse=False)
    parsing = floor_rate(requests, args.spans, args.threads, parse=True)
    print(f"floor: grpcio server, no work  {null:12,.0f} spans/s   {null / decode:6.1%} of bare decode")
    print(f"floor: grpcio server, parses   {parsing:12,.0f} spans/s   {parsing / decode:6.1%} of bare decode")
    durable = floor_rate(requests, args.spans, args.threads, parse=True, log=True)
    print(f"floor: parses, logs (fsync)    {durable:12,.0f} spans/s   {durable / parsing:6.1%} of the parsing floor "
          "(each request on disk before its answer: group commit, one writev and one fdatasync)")
    if durable < 0.8 * parsing:
        print("  below the acknowledging target (80 % of the parsing floor) by itself: no receiver that puts each request "
              "on disk before it answers reaches the target on this disk in this run")

    stage_cpu = stages(requests[: max(1, 20480 // args.spans)], args.spans)
    print("CPU per span by stage, in one process (us):")
    for name, us in stage_cpu.items():
        print(f"  {name:34s} {us:7.1f}")
    path = sum(us for name, us in stage_cpu.items()
               if not name.startswith(("encode, clickhouse-connect", "floor", "check in Python", "parse")))
    print(f"  {'collector path (as the workers run)':34s} {path:7.1f}")
    floor = stage_cpu["parse (protobuf; the floor's)"] + sum(us for name, us in stage_cpu.items() if name.startswith("floor:"))
    print(f"  {'floor: parse, read, encode, insert':34s} {floor:7.1f}   (target <= 35; "
          f"{'the floor alone is past it' if floor > 35 else 'under it'}); runmeter adds {path - floor:.1f} "
          "(check, log, its dialects, prices, runs and calls rows)")
    scan, log = stage_cpu["check in C, on bytes (receiver)"], stage_cpu["log: append + fsync (receiver)"]

    counts = [int(w) for w in args.workers.split(",")]
    # Each worker count runs args.rounds times, the counts taking turns, so the machine's drift
    # falls on all alike; the figures below are the rounds' medians (the SDK pipeline is measured
    # once, in the first round of the most workers).
    rounds: dict[int, list[dict[str, float]]] = {w: [] for w in counts}
    # Each worker count once more a round, its workers paused while the load is sent (the receiver
    # alone), and then, while they process that backlog, the durable floor sent the same load: the
    # floor with the cores shared with the processing of the spans, as the collector's receiver has them.
    paused_rounds: dict[int, list[dict[str, float]]] = {w: [] for w in counts if w}
    # The parsing and the durable floors again each round, beside its collector runs: the machine's
    # speed drifts by a fifth over minutes here, so each share of the parsing floor below is the
    # median of the rounds' own shares.
    floor_parsing: list[float] = []
    floor_durable: list[float] = []
    host: list[float] = []  # the host's two-core scaling, each round (host_scaling)
    with floor_server(parse=True, log=True) as beside_port, floor_server(parse=True) as parsing_port:
        for i in range(args.rounds):
            host.append(host_scaling())
            floor_parsing.append(total / send_load(parsing_port, requests, args.threads))
            floor_durable.append(total / send_load(beside_port, requests, args.threads))
            for workers in counts:
                rounds[workers].append(run_collector(requests, args, workers, sdk=i == 0 and workers == max(counts)))
            for workers in paused_rounds:
                paused_rounds[workers].append(run_collector(requests, args, workers, sdk=False, paused=True, beside=beside_port))
    results = {w: _median_of(rs) for w, rs in rounds.items()}
    paused_by = {w: _median_of(rs) for w, rs in paused_rounds.items()}
    most = max(results)
    # The production set-up: a token bound to a project. The receiver then parses each request
    # and reads who owns each trace (one store lookup per new trace, for the requests waiting).
    bound = run_collector(requests, args, most, sdk=False, project="bench") if args.project_token else None
    one = results.get(1)

    def share(rates: list[float]) -> float:
        """The median of the rounds' rates, each as a share of its own round's parsing floor."""
        return statistics.median(rate / floor for rate, floor in zip(rates, floor_parsing))

    durable_share = share(floor_durable)
    print(f"the floors again in each round, beside its collector runs: parsing {statistics.median(floor_parsing):,.0f} spans/s "
          f"(by round " + ", ".join(f"{f:,.0f}" for f in floor_parsing) + f"), durable {durable_share:.1%} of it "
          "(the median of the rounds' shares; the shares below are of each round's own parsing floor)")
    for workers, r in results.items():
        print(f"--- {workers} worker process(es)")
        acked_share = share([rr["acked"] for rr in rounds[workers]])
        print(f"collector acknowledged         {r['acked']:12,.0f} spans/s   {acked_share:6.1%} of the parsing floor (target >= 80 %)")
        if workers in paused_rounds:
            # From the parsing floor to this figure in three steps, each measured in this run: making
            # each request durable (the floor that logs), the collector's own receiving (its workers
            # paused: the cores are the receiver's and the load generator's), then sharing the cores
            # with its workers. The largest step is what stops the target.
            alone = share([p["acked"] for p in paused_rounds[workers]])
            steps = {
                "each request made durable (the floor that parses and logs)": 1 - durable_share,
                f"the collector's own receiving (check, log, handler; its {workers} worker(s) paused: {alone:.1%})": durable_share - alone,
                "the cores shared with its workers": alone - acked_share,
            }
            print("  from the parsing floor, in points of it: " + "; ".join(f"{name} {-v * 100:+.1f}" for name, v in steps.items()))
            print(f"  the largest step: {max(steps, key=steps.__getitem__)}")
            if all(p.get("beside_valid") for p in paused_rounds[workers]):
                # The same floor with the cores shared as the collector's receiver has them: what any
                # durable receiver acknowledges here while the spans it took are processed beside it.
                shared = share([p["beside"] for p in paused_rounds[workers]])
                verdict = (f"below the target by itself: no receiver that logs durably reaches 80 % while {workers} worker(s) process "
                           "the spans on these cores" if shared < 0.8 else "room for the target")
                print(f"  floor: parses, logs (fsync), beside its {workers} worker(s) processing the load: {shared:.1%} of the parsing floor "
                      f"({verdict}); the collector acknowledged {acked_share / shared:.1%} of it")
            else:
                print(f"  (the floor beside the processing: not measured - its {workers} worker(s) finished the backlog before the floor's load did)")
        per_span, parse = 1e6 / parsing, stage_cpu["parse (protobuf; the floor's)"]
        # The receiver does not parse (the workers do): its check reads the bytes in C instead.
        ceiling = per_span / (per_span - parse + scan + log)
        if ceiling < 1:
            print(f"  ceiling: the check in C ({scan:.1f}) and the log ({log:.1f}) in place of the floor's parse ({parse:.1f}) "
                  f"in its {per_span:.1f} per span allow at most {ceiling:.0%} of the parsing floor")
        else:
            print(f"  no ceiling from the stages: the check in C ({scan:.1f}) and the log ({log:.1f}) cost less CPU than the floor's "
                  f"parse ({parse:.1f}) they replace")
        line = f"collector end-to-end into chDB {r['e2e']:12,.0f} spans/s"
        if one and workers != 1:
            # Paired by round (run one after the other): the median of the rounds' ratios.
            ratios = [b["e2e"] / a["e2e"] for a, b in zip(rounds[1], rounds[workers])]
            line += (f"   {statistics.median(ratios):5.2f}x one worker (target >= 1.7x with two; by round "
                     + ", ".join(f"{x:.2f}x" for x in ratios) + ")")
        print(line)
        print(f"collector CPU per span         {r['cpu_us']:12.1f} us      (collector process + workers; target <= 35)")
        split = {k: v for k, v in r.items() if k.startswith(("collector ", "workers ")) and v >= 0.05}
        store = sum(v for k, v in split.items() if k.endswith((" store", " merges", " inserts")))
        print("  by thread: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(split.items(), key=lambda kv: -kv[1]))
              + f"; the store's work {store:.1f} of it (chDB's threads and the inserting ones, on which chDB runs an insert's "
              "pipeline and the workers' relayed metrics are recorded: inserting and merging the three tables' rows)")
        named = {k.removeprefix("thread: "): v for k, v in r.items() if k.startswith("thread: ") and v >= 0.05}
        print("  the interpreters' threads by name: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(named.items(), key=lambda kv: -kv[1])))
        missing = f"{r['missing']:.0f} MISSING" if r["missing"] else "none missing"
        print(f"stored: {r['stored']:.0f} of {r['expected_stored']:.0f} acknowledged spans of the load (median; {missing} over "
              f"{len(rounds[workers])} round(s), the SDK pipeline's spans - sent once, after a round's load - counted too)")
        print(f"runs: {r['whole']:.0f} whole of {r['runs_expected']:.0f}, ${r['cost']:.6f} (expected ${r['cost_expected']:.6f} from list prices): "
              f"{'correct' if r['ok'] else 'WRONG'} in every round")
        if "sdk" in r:
            print(f"Python SDK OTLP pipeline       {r['sdk']:12,.0f} spans/s   (dropped {r['sdk_dropped']} of 40000 at its default queue)")
            print(f"end-to-end with {workers} workers: {r['e2e'] / r['sdk']:.1f}x the SDK pipeline (target >= 3x)")
    for workers, p in paused_by.items():
        missing = "none missing" if not p["missing"] else f"{p['missing']:.0f} MISSING"
        print(f"--- {workers} worker process(es) paused while the load is sent, then let go: acknowledged {p['acked']:,.0f} spans/s "
              f"({share([q['acked'] for q in paused_rounds[workers]]):.1%} of the parsing floor); stored {p['stored']:.0f} of {p['expected_stored']:.0f} "
              f"({missing} over {len(paused_rounds[workers])} round(s)), runs {'correct' if p['ok'] else 'WRONG'} in every round")
    if bound is not None:
        print(f"--- {most} worker process(es), the load sent with a token bound to a project (ownership judged; every span stamped with the project)")
        print(f"collector acknowledged         {bound['acked']:12,.0f} spans/s   {bound['acked'] / statistics.median(floor_parsing):6.1%} of the parsing floor, "
              f"{bound['acked'] / results[most]['acked']:.2f}x the same without the token")
        print(f"collector end-to-end into chDB {bound['e2e']:12,.0f} spans/s   {bound['e2e'] / results[most]['e2e']:.2f}x the same without the token")
        print(f"ownership's store lookups      {bound['lookups']:12,.0f}           for {bound['runs_expected']:,} new traces "
              "(the embedded store's ids are in a filter: a trace it cannot hold is not looked up)")
        print(f"collector CPU per span         {bound['cpu_us']:12.1f} us      of which the collector's Python "
              f"{bound.get('collector python', 0.0):.1f} (check and ownership read on the wire, store lookups; "
              f"{results[most].get('collector python', 0.0):.1f} without the token)")
        without = results[most]
        split = sorted({k for r in (bound, without) for k, v in r.items() if k.startswith(("collector ", "workers ")) and v >= 0.05},
                       key=lambda k: -bound.get(k, 0.0))
        print("  by thread, with / without the token: " + ", ".join(f"{k} {bound.get(k, 0.0):.1f} / {without.get(k, 0.0):.1f}" for k in split))
        print(f"stored: {bound['stored']} of {bound['expected_stored']} acknowledged spans "
              f"({'none missing' if bound['stored'] == bound['expected_stored'] else 'MISSING'}); runs: {bound['whole']} whole of "
              f"{bound['runs_expected']}, {'correct' if bound['ok'] else 'WRONG'}")
    cores = len(os.sched_getaffinity(0))
    if one and 2 in results and one["worker_cpu_us"]:
        # What the cores allow, from the one-worker run's CPU per span: each worker is at most one
        # core, and all of it (collector, workers, the load generator) shares the cores.
        everything = one["cpu_us"] + one["gen_cpu_us"]
        most = min(2 / one["worker_cpu_us"], cores / everything) * 1e6
        print(f"ceiling for two workers on {cores} cores at the one-worker run's CPU per span (worker {one['worker_cpu_us']:.0f} us, "
              f"collector {one['cpu_us'] - one['worker_cpu_us']:.0f}, load generator {one['gen_cpu_us']:.1f}): "
              f"{most:,.0f} spans/s = {most / one['e2e']:.2f}x one worker")
        # Both at full speed at once is what the cores give when they are whole; the host's own
        # scaling, measured each round, says what they gave in this run.
        scaling = statistics.median(host)
        at_host = most * min(1.0, scaling / 2)
        verdict = (" - below 1.7x: the host's cores stop the target" if at_host < 1.7 * one["e2e"] else "")
        print(f"  floor: the host's two cores did {scaling:.2f}x one core's Python work running at once (median of the rounds; "
              "by round " + ", ".join(f"{h:.2f}x" for h in host) + f"); at that, {at_host:,.0f} spans/s = "
              f"{at_host / one['e2e']:.2f}x one worker{verdict}")
        # And at the two-worker run's own CPU per span, which is higher: the store gets twice the
        # parts a second and merges them within the run.
        two = results[2]
        own = cores / (two["cpu_us"] + two["gen_cpu_us"]) * 1e6
        paired = statistics.median(b["e2e"] / a["e2e"] for a, b in zip(rounds[1], rounds[2]))  # as the headline's
        verdict = (" - below 1.7x: the CPU per span of the two-worker run stops the target" if own < 1.7 * one["e2e"]
                   else f"; measured {paired:.2f}x (the median of the rounds' ratios)")
        print(f"  at the two-worker run's own CPU per span ({two['cpu_us']:.0f} us, load generator {two['gen_cpu_us']:.1f}): "
              f"{own:,.0f} spans/s = {own / one['e2e']:.2f}x one worker{verdict}")
    last = results[max(results)]
    if "sdk" in last:
        most = cores / (last["cpu_us"] + last["gen_cpu_us"]) * 1e6
        verdict = "below 3x: the CPU per span stops the target" if most < 3 * last["sdk"] else "room for 3x"
        print(f"ceiling end to end at {last['cpu_us']:.0f} us of CPU per span on {cores} cores: {most:,.0f} spans/s = "
              f"{most / last['sdk']:.1f}x the SDK pipeline ({verdict})")
    print(f"cores: {cores}; per-core scaling: "
          + ", ".join(f"{w} -> {r['e2e'] / w:,.0f} spans/s per worker" for w, r in results.items() if w))


def _median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The rounds' medians, key by key; ``ok`` only if every round was, ``missing`` summed over them."""
    out = {k: statistics.median(r[k] for r in rounds if k in r) for k in {k for r in rounds for k in r}}
    out["ok"] = all(r["ok"] for r in rounds)
    out["missing"] = sum(r["expected_stored"] - r["stored"] + r["sdk_expected"] - r["sdk_stored"] for r in rounds)
    return out


def run_collector(
    requests: list[bytes], args: argparse.Namespace, workers: int, sdk: bool, project: str | None = None, paused: bool = False,
    beside: int | None = None,
) -> dict[str, float]:
    """One run of the collector under the load. ``paused``: its workers are stopped (``SIGSTOP``) while
    the load is sent and go on after it - the receiver alone, acknowledging with the cores to itself
    and the load generator (the records wait in the log and the pipes, and are all processed after).
    ``beside``: the port of a floor server, sent the same load while the workers process the backlog
    (``beside`` in the result: that floor's rate with the cores shared with the processing of these
    spans; ``beside_valid`` 0 when the processing ended before that load did)."""
    total = args.requests * args.spans
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, ports = start_collector(tmp, workers, project)
        try:
            assert proc.proc is not None
            workers_pids = proc.worker_pids()
            pids = [proc.proc.pid, *workers_pids]
            cpu0, worker_cpu0, threads0 = cpu_seconds(pids), cpu_seconds(workers_pids), thread_cpu(pids)
            names0 = thread_cpu(pids, by_name=True)
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            if paused:
                for pid in workers_pids:
                    os.kill(pid, signal.SIGSTOP)
            gen = ctx.Process(target=_load, args=(ports["grpc"], requests, args.threads, q, _TOKEN if project else None))
            gen.start()
            # From its first request: the load generator's own start (a fresh interpreter, grpc
            # imported, the requests unpickled: most of a second) is not the collector's time.
            try:
                t_start, acked_elapsed, gen_cpu = q.get(timeout=600)
            finally:
                if paused:
                    for pid in workers_pids:
                        os.kill(pid, signal.SIGCONT)
            gen.join()
            if beside is not None:
                out["beside"] = total / send_load(beside, requests, args.threads)
                out["beside_valid"] = float(_metrics(ports["admin"]).get("runmeter_collector_spans_written_total", 0) < total)
            while True:
                m = _metrics(ports["admin"])
                if m.get("runmeter_collector_spans_written_total", 0) >= total and m.get("runmeter_collector_store_lag_bytes", 1) == 0:
                    break
                time.sleep(0.2)  # rendering /metrics costs the collector CPU too: not too often
            e2e_elapsed = time.time() - t_start
            out["lookups"] = m.get("runmeter_collector_owner_lookups_total", 0.0)
            out["cpu_us"] = (cpu_seconds(pids) - cpu0) / total * 1e6
            out["worker_cpu_us"] = (cpu_seconds(workers_pids) - worker_cpu0) / total * 1e6
            out["gen_cpu_us"] = gen_cpu / total * 1e6
            for (pid, kind), seconds in thread_cpu(pids).items():
                key = f"{'collector' if pid == proc.proc.pid else 'workers'} {kind}"
                out[key] = out.get(key, 0.0) + (seconds - threads0.get((pid, kind), 0.0)) / total * 1e6
            for (pid, name), seconds in thread_cpu(pids, by_name=True).items():
                key = f"thread: {'collector' if pid == proc.proc.pid else 'workers'} {name}"
                out[key] = out.get(key, 0.0) + (seconds - names0.get((pid, name), 0.0)) / total * 1e6
            sdk_spans = 0
            if sdk:
                out["sdk"], dropped = sdk_pipeline(ports["grpc"], 40_000)
                out["sdk_dropped"] = dropped
                sdk_spans = 40_000 - dropped
        finally:
            proc.terminate(120)
        from runmeter.exporter import Store

        store = Store(f"chdb://{tmp / 'store'}")
        with store.session() as c:
            # The load generator's traces have ids 1..n; the SDK pipeline's are random 128-bit ones.
            last = f"{total // 8:032x}"
            stored, sdk_stored = c.query(
                f"SELECT countIf(TraceId <= '{last}'), countIf(TraceId > '{last}') FROM otel_traces WHERE ServiceName = 'bench-agent'"
            ).result_rows[0]
            runs, cost, whole = c.query(
                "SELECT count(), sum(CostUsd), countIf(LlmCalls = 5 AND ToolCallsTotal = 2 AND NOT Incomplete) FROM runmeter_runs FINAL "
                f"WHERE TraceId <= '{last}'"
            ).result_rows[0]
        store.close()
    expected = total // 8 * RUN_COST
    out.update(
        acked=total / acked_elapsed, e2e=total / e2e_elapsed, stored=stored, expected_stored=total, sdk_stored=sdk_stored, sdk_expected=sdk_spans,
        whole=whole, runs_expected=total // 8, cost=cost, cost_expected=expected,
        ok=runs == whole == total // 8 and abs(cost - expected) <= 1e-9 * expected,
    )
    return out


_KIND_NAMES = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS_NAMES = ("Unset", "Ok", "Error")
_NO_NESTED: tuple[list[object], ...] = ([],) * 7  # no events, no links: shared, as the row builder does


def _touch_rows(req: ExportTraceServiceRequest) -> list[list[object]]:
    """The least Python an OTLP span needs on its way to an ``otel_traces`` row: every field and
    attribute read once into the row, as text (the floor under any collector written in Python)."""
    out: list[list[object]] = []
    for rs in req.resource_spans:
        resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
        service = resource.get("service.name", "")
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            for s in ss.spans:
                attrs = {}
                for kv in s.attributes:
                    v = kv.value
                    kind = v.WhichOneof("value")
                    attrs[kv.key] = v.string_value if kind == "string_value" else str(getattr(v, kind))
                start = s.start_time_unix_nano
                status = s.status
                out.append([
                    start, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.trace_state, s.name, _KIND_NAMES[s.kind],
                    service, resource, scope_name, scope_version, attrs, s.end_time_unix_nano - start, _STATUS_NAMES[status.code],
                    status.message, *_NO_NESTED,
                ])
    return out


def table_types(client: Any) -> Any:
    """The store's column types, as ``NativeEncoder`` takes them."""
    from runmeter.exporter import COLUMN_TYPES_SQL, column_types

    return column_types(client.query(COLUMN_TYPES_SQL).result_rows)


def stages(requests: list[bytes], spans_per_request: int) -> dict[str, float]:
    """CPU per span of each stage of the collector path, in this process (us, process time)."""
    from runmeter.collector._convert import Limits, check, check_bytes, convert, convert_bytes
    from runmeter.conventions import load_dialects
    from runmeter.exporter import Store
    from runmeter.exporter import NativeEncoder, insert_blocks
    from runmeter.exporter._rows import CALL_COLUMNS, RUN_COLUMNS, TRACE_COLUMNS, call_row, run_row, trace_row
    from runmeter.processor import PriceBook, RunLimits, RunProcessor

    n = len(requests) * spans_per_request
    out: dict[str, float] = {}
    from runmeter.collector._worker import worker_gc

    worker_gc()  # as a worker runs (collector/_worker.py): no automatic collections, a full one a minute

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        gc.collect()  # the garbage of one stage is not collected on another's time
        t0 = time.process_time()
        result = fn()
        out[name] = (time.process_time() - t0) / n * 1e6
        return result

    parsed = timed("parse (protobuf; the floor's)", lambda: [ExportTraceServiceRequest.FromString(r) for r in requests])
    checked = timed("check in C, on bytes (receiver)", lambda: [check_bytes(r) for r in requests])
    assert all(c is not None for c in checked), "the receiver's C check could not decide (or is not built)"
    timed("check in Python (when C can't)", lambda: [check(r) for r in parsed])
    with tempfile.TemporaryDirectory() as d:  # the receiver's log: append, group commit, fdatasync (8 at a time)
        from runmeter.collector._wal import WriteAheadLog

        wal = WriteAheadLog(d, on_durable=lambda seq, item: None)
        with ThreadPoolExecutor(8) as pool:
            timed("log: append + fsync (receiver)", lambda: list(pool.map(lambda r: wal.append(r, None).result(), requests)))
        wal.close()
    touched = timed("floor: read every field into a row", lambda: [row for r in parsed for row in _touch_rows(r)])
    timed("parse + convert (when C can't)", lambda: [s for r in requests for s in convert(ExportTraceServiceRequest.FromString(r), Limits()).spans])
    fast = timed("convert, read from the bytes in C", lambda: [convert_bytes(r, Limits()) for r in requests])
    assert all(c is not None for c in fast), "the workers' reader in C could not decide (or is not built)"
    spans = [s for c in fast if c is not None for s in c.spans]
    forwarded: list = []

    class Keep:
        def on_start(self, span, parent_context=None): ...  # type: ignore[no-untyped-def]
        def on_end(self, span): forwarded.append(span)  # type: ignore[no-untyped-def]
        def shutdown(self): ...  # type: ignore[no-untyped-def]
        def force_flush(self, timeout_millis=30000): return True  # type: ignore[no-untyped-def]

    records: list = []

    class Runs:  # the run records, as the worker's sink takes them
        def write_runs(self, batch): records.extend(batch)  # type: ignore[no-untyped-def]
        def write_outcomes(self, events): ...  # type: ignore[no-untyped-def]

    prices = PriceBook()
    processor = RunProcessor(Keep(), sink=Runs(), prices=prices, mode="remote", limits=RunLimits(quiet_s=0.5), clock=lambda: 0.0,
                             owns_spans=True)  # as the worker's pipeline makes it: the spans are its own

    def process() -> None:  # as a worker's pipeline hands them over (Pipeline._take)
        for i in range(0, len(spans), 64):
            processor.on_end_many(spans[i:i + 64])
        processor.sweep(final=True)

    timed("price, assemble runs (RunProcessor)", process)
    dialects = load_dialects()
    trows = timed("rows: otel_traces", lambda: [trace_row(s) for s in forwarded])
    crows = timed("rows: runmeter_calls", lambda: [r for s in forwarded if (r := call_row(s, dialects, prices)) is not None])
    now = time.time_ns()
    rrows = timed("rows: runmeter_runs", lambda: [run_row(r, now) for r in records])
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"chdb://{d}/store")
        with store.session() as client:
            types = table_types(client)
            # clickhouse-connect's codecs beside the block writer in C the workers use (``auto``)
            for codec, label in (("python", "encode, clickhouse-connect Python"), ("rust", "encode, clickhouse-connect rust"),
                                 ("auto", "encode, block writer in C (workers)")):
                try:
                    enc = NativeEncoder(types, codec)
                except ValueError:  # clickhouse-connect[rust] not installed
                    continue
                blocks = timed(label, lambda enc=enc: {  # type: ignore[misc]
                    "otel_traces": (TRACE_COLUMNS, enc.encode("otel_traces", TRACE_COLUMNS, trows)),
                    "runmeter_calls": (CALL_COLUMNS, enc.encode("runmeter_calls", CALL_COLUMNS, crows)),
                    "runmeter_runs": (RUN_COLUMNS, enc.encode("runmeter_runs", RUN_COLUMNS, rrows)),
                })
            timed("insert into chDB (its threads too)", lambda: insert_blocks(client, "bench", blocks))
            enc = NativeEncoder(types, "auto")
            floor_block = timed("floor: encode those rows", lambda: enc.encode("otel_traces", TRACE_COLUMNS, touched))
            timed("floor: insert them into chDB", lambda: insert_blocks(client, "floor", {"otel_traces": (TRACE_COLUMNS, floor_block)}))
        store.close()
    gc.enable()
    gc.unfreeze()
    return out


if __name__ == "__main__":
    main()
