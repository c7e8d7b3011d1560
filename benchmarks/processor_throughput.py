"""Spans/s through BatchSpanProcessor alone vs RunProcessor -> BatchSpanProcessor, in one run.

Both pipelines create and end the same realistic span trees with a real SDK
TracerProvider (agent runs: a run root, LLM calls with usage, tool calls with
argument hashes and resources, HTTP client spans) and export to the same no-op
exporter. RunProcessor does everything it does in production: run stamping,
dialect reading, pricing with the PriceBook, the live ledger, loop detection,
and run assembly on its background thread.

Target: RunProcessor pipeline >= 50 % of the bare BatchSpanProcessor's throughput.

    .venv/bin/python benchmarks/processor_throughput.py [--runs 300] [--rounds 5]
    .venv-bench/bin/python benchmarks/processor_throughput.py --callgrind   # instructions, not time

Wall-clock rates on a shared 2-core machine move by +-5 % from one run to the next.
``--callgrind`` counts instructions instead (``valgrind --tool=callgrind``): each pipeline runs
in its own process, collection on only for the measured runs *and* the flush that follows them
(so the work left to the background threads counts too); the throughput ratio is the inverse
ratio of instructions per span.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from runmeter.processor import RUN_CONTEXT_KEY, InMemoryRunSink, LiveRun, RunLedger, RunLimits, RunProcessor

import _callgrind  # benchmarks/ is on sys.path when a script in it runs


class NoOpExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


MODELS = [("openai", "gpt-5.5"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")]
TOOLS = ["read_file", "search", "edit_file", "run_tests"]


def agent_run(tracer: trace.Tracer, i: int) -> int:
    """One run: 1 root + 8 LLM calls (each with an HTTP child) + 7 tool calls = 24 spans."""
    run_id = f"run-{i}"
    root = tracer.start_span("invoke_agent bench", attributes={
        "gen_ai.operation.name": "invoke_agent", "runmeter.run.root": True, "runmeter.run.id": run_id,
        "runmeter.run.name": "bench", "runmeter.run.owner": "ana", "runmeter.run.project": "perf"})
    live = LiveRun(run_id, RunLedger(run_id), {"runmeter.run.id": run_id, "runmeter.run.name": "bench"}, root)
    token = otel_context.attach(otel_context.set_value(RUN_CONTEXT_KEY, live, trace.set_span_in_context(root)))
    n = 1
    try:
        for step in range(8):
            provider, model = MODELS[(i + step) % 3]
            with tracer.start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
                "server.address": "api.example.com", "server.port": 443,
                "runmeter.llm.input_hash": f"{i:08x}{step:08x}"}) as s:
                with tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT, attributes={"http.request.method": "POST"}):
                    pass
                s.set_attributes({
                    "gen_ai.response.model": model, "gen_ai.response.id": f"resp-{step}",
                    "gen_ai.usage.input_tokens": 1_000 + 500 * step, "gen_ai.usage.output_tokens": 120 + step,
                    "gen_ai.usage.cache_read.input_tokens": 256 * step,
                })
            n += 2
            for t in range(step % 3):
                name = TOOLS[(step + t) % 4]
                with tracer.start_as_current_span(f"execute_tool {name}", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                    "runmeter.tool.args_hash": f"{(step * 7 + t) % 5:016x}", "runmeter.tool.resource": f"src/m{t}.py"}):
                    pass
                n += 1
    finally:
        otel_context.detach(token)
        root.end()
    return n


def _pipeline(build: str) -> tuple[TracerProvider, NoOpExporter, InMemoryRunSink]:
    exporter = NoOpExporter()
    batch = BatchSpanProcessor(exporter, max_queue_size=1 << 16, max_export_batch_size=512)
    sink = InMemoryRunSink()
    proc: SpanProcessor = batch if build == "bare" else RunProcessor(batch, sink=sink, limits=RunLimits(grace_s=0.2))
    provider = TracerProvider()
    provider.add_span_processor(proc)
    return provider, exporter, sink


def measure(build: str, runs: int) -> tuple[float, int, int]:
    provider, exporter, sink = _pipeline(build)
    tracer = provider.get_tracer("bench")
    spans = 0
    t0 = time.perf_counter()
    for i in range(runs):
        spans += agent_run(tracer, i)
    elapsed = time.perf_counter() - t0
    provider.force_flush()
    provider.shutdown()
    assert exporter.count == spans, f"{build}: {spans - exporter.count} spans dropped"
    if build != "bare":
        assert len(sink.runs) == runs, f"{len(sink.runs)} run records for {runs} runs"
    return spans / elapsed, spans, len(sink.runs)


def _child(build: str, runs: int) -> None:
    """Under callgrind: warm up, then make ``runs`` agent runs and flush them while collection is on."""
    provider, exporter, sink = _pipeline(build)
    tracer = provider.get_tracer("bench")
    for i in range(20):
        agent_run(tracer, i)
    provider.force_flush()
    _callgrind.ready()
    spans = sum(agent_run(tracer, 20 + i) for i in range(runs))
    provider.force_flush()
    _callgrind.done()
    provider.shutdown()
    assert exporter.count == spans + 20 * 24, "spans dropped"
    assert build == "bare" or len(sink.runs) == runs + 20


def callgrind(runs: int, repeats: int = 3) -> None:
    spans = runs * 24
    per_span: dict[str, list[float]] = {"bare": [], "runmeter": []}
    for build in [b for _ in range(repeats) for b in per_span]:
        per_span[build].append(_callgrind.instructions([__file__, "--child", build, "--runs", str(runs)]) / spans)
    bare, ours = statistics.median(per_span["bare"]), statistics.median(per_span["runmeter"])
    print(f"runs: {runs} ({spans} spans) after 20 warm-up runs, flushed; each pipeline {repeats}x in its own process under callgrind")
    for build, label in (("bare", "BatchSpanProcessor alone:"), ("runmeter", "RunProcessor -> BatchSpanProcessor:")):
        counts = per_span[build]
        ir = statistics.median(counts)
        print(f"{label:<40} median {ir:10,.0f} instructions/span (spread {(max(counts) - min(counts)) / ir:.1%})")
    print(f"throughput ratio (bare instructions / runmeter instructions): {bare / ours:.0%} of bare  (target >= 50%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead of timing")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.runs)
    if args.callgrind:
        return callgrind(args.runs if args.runs != 300 else 50)
    measure("bare", 20)
    measure("runmeter", 20)  # warm caches (pricing plans, imports)
    bare, ours = [], []
    spans = 0
    for _ in range(args.rounds):
        rate, spans, _ = measure("bare", args.runs)
        bare.append(rate)
        ours.append(measure("runmeter", args.runs)[0])
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"runs per round: {args.runs} ({spans} spans), rounds: {args.rounds}, nothing dropped")
    print(f"BatchSpanProcessor alone:                median {b:10,.0f} spans/s")
    print(f"RunProcessor -> BatchSpanProcessor:      median {o:10,.0f} spans/s")
    # Each round measures both back to back: the median of the rounds' ratios cancels the shared machine's load.
    ratio = statistics.median(x / y for x, y in zip(ours, bare))
    print(f"ratio: median of the rounds' ratios {ratio:.0%} of bare (ratio of the medians {o / b:.0%})  (target >= 50%)")


if __name__ == "__main__":
    main()
