"""The cost of instrumenting one chat completion: bare, the official openai-v2 instrumentation, runmeter.

The network is taken out of the measurement: every client gets an in-process
``MockTransport`` that answers with the same JSON body, so what is timed is the
SDK plus the instrumentation. The three variants run interleaved, round after
round, in one process; the script prints the median time per call of each and
its ratio to the bare call. runmeter also prices the call and checks the run's
budget (the call runs inside ``runmeter.run(..., budget=...)``).

Target: runmeter's ratio <= the official instrumentation's.

    make bench        # or: .venv-bench/bin/python benchmarks/instrumentation_overhead.py [--calls 2000]
    .venv-bench/bin/python benchmarks/instrumentation_overhead.py --callgrind   # instructions, not time

``--callgrind`` counts instructions instead (``valgrind --tool=callgrind``, which wall-clock
noise cannot touch): each variant runs in its own process under callgrind with collection off
while it imports and warms up, then on for exactly ``--calls`` calls; the script prints the
instructions per call of each and the ratios to the bare call.

Needs the ``bench`` extra (the official instrumentation), which ``make bench``
installs in its own environment.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import _callgrind  # benchmarks/ is on sys.path when a script in it runs

BODY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-5.5",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Three unread, one urgent."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 57, "completion_tokens": 21, "total_tokens": 78,
              "prompt_tokens_details": {"cached_tokens": 32}, "completion_tokens_details": {"reasoning_tokens": 0}},
}).encode()
MESSAGES = [{"role": "system", "content": "You triage inboxes."}, {"role": "user", "content": "Summarize the inbox."}]


class NullExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _transport() -> object:
    import httpx2

    return httpx2.MockTransport(lambda request: httpx2.Response(200, content=BODY, headers={"content-type": "application/json"}))


def _client() -> openai.OpenAI:
    import httpx2

    return openai.OpenAI(api_key="sk-bench", base_url="https://api.openai.com/v1", http_client=httpx2.Client(transport=_transport()))


def _call(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-5.5", messages=MESSAGES)


def measure(fn: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _variant(name: str, provider: TracerProvider) -> tuple[Callable[[], None], Callable[[], None]]:
    """The call to make for a variant, and how to undo its set-up."""
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialInstrumentor

    import runmeter
    from runmeter.instrumentation import OpenAIInstrumentor
    from runmeter.processor import PriceBook

    client = _client()
    if name == "bare":
        return (lambda: _call(client)), (lambda: None)
    if name == "official openai-v2":
        OfficialInstrumentor().instrument(tracer_provider=provider)
        return (lambda: _call(client)), (lambda: OfficialInstrumentor().uninstrument())
    OpenAIInstrumentor().instrument(tracer_provider=provider, prices=PriceBook(), providers={})
    run = runmeter.run("bench", budget=runmeter.Budget(max_cost_usd=1e9, max_llm_calls=10**9), tracer_provider=provider)
    run.__enter__()

    def undo() -> None:
        run.__exit__(None, None, None)
        OpenAIInstrumentor().uninstrument()

    return (lambda: _call(client)), undo


def _child(name: str, calls: int, warm: int) -> None:
    """Under callgrind: set up, warm up, say so, wait for collection to be switched on, make the calls."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    call, undo = _variant(name, provider)
    for _ in range(warm):
        call()
    _callgrind.ready()
    for _ in range(calls):
        call()
    _callgrind.done()
    undo()


def callgrind(calls: int, warm: int, repeats: int = 3) -> None:
    per_call: dict[str, list[float]] = {"bare": [], "official openai-v2": [], "runmeter": []}
    for name in [n for _ in range(repeats) for n in per_call]:
        total = _callgrind.instructions([__file__, "--child", name, "--calls", str(calls), "--warm", str(warm)])
        per_call[name].append(total / calls)
    medians = {name: statistics.median(v) for name, v in per_call.items()}
    bare = medians["bare"]
    print(f"calls: {calls} measured after {warm} warm-up calls; each variant {repeats}x in its own process under callgrind")
    for name, ir in medians.items():
        spread = (max(per_call[name]) - min(per_call[name])) / ir
        print(f"{name:<20} median {ir:12,.0f} instructions/call (spread {spread:.1%})   ratio to bare {ir / bare:.3f}x")
    off, ours = medians["official openai-v2"] / bare, medians["runmeter"] / bare
    verdict = "meets" if ours <= off else "misses"
    print(f"runmeter {verdict} the target (ratio <= the official instrumentation's: {ours:.3f}x vs {off:.3f}x), "
          "while also pricing and checking the budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=None, help="calls per round (default 1000; 200 with --callgrind)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead of timing")
    parser.add_argument("--warm", type=int, default=50, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.calls, args.warm)
    if args.callgrind:
        return callgrind(args.calls or 200, args.warm)
    args.calls = args.calls or 1000

    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialInstrumentor

    import runmeter
    from runmeter.instrumentation import OpenAIInstrumentor
    from runmeter.processor import PriceBook

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    client = _client()
    budget = runmeter.Budget(max_cost_usd=1e9, max_llm_calls=10**9)

    def bare() -> None:
        _call(client)

    def official() -> None:
        _call(client)

    def ours() -> None:
        _call(client)

    def run_official() -> float:
        OfficialInstrumentor().instrument(tracer_provider=provider)
        try:
            return measure(official, args.calls)
        finally:
            OfficialInstrumentor().uninstrument()

    def run_ours() -> float:
        OpenAIInstrumentor().instrument(tracer_provider=provider, prices=PriceBook(), providers={})
        try:
            with runmeter.run("bench", budget=budget, tracer_provider=provider):
                return measure(ours, args.calls)
        finally:
            OpenAIInstrumentor().uninstrument()

    variants = {"bare": lambda: measure(bare, args.calls), "official openai-v2": run_official, "runmeter": run_ours}
    results: dict[str, list[float]] = {k: [] for k in variants}
    ratios: dict[str, list[float]] = {"official openai-v2": [], "runmeter": []}
    rng = random.Random(1)
    for r in range(args.rounds + 1):  # the first round warms up and is dropped
        order = list(variants)
        rng.shuffle(order)  # no variant always runs first (or last) in a round
        t = {name: variants[name]() for name in order}
        if r == 0:
            continue
        for name, v in t.items():
            results[name].append(v)
        for name in ratios:
            ratios[name].append(t[name] / t["bare"])  # each round's ratio: the machine's load cancels out
    print(f"calls per round: {args.calls}, rounds: {args.rounds}, network: in-process MockTransport")
    for name, v in results.items():
        ratio = statistics.median(ratios[name]) if name in ratios else 1.0
        print(f"{name:<20} median {statistics.median(v) * 1e6:8.1f} us/call   median ratio to bare {ratio:.3f}x")
    off, ours_ratio = statistics.median(ratios["official openai-v2"]), statistics.median(ratios["runmeter"])
    verdict = "meets" if ours_ratio <= off else "misses"
    print(f"runmeter {verdict} the target (ratio <= the official instrumentation's: {ours_ratio:.3f}x vs {off:.3f}x), "
          "while also pricing and checking the budget")


if __name__ == "__main__":
    main()
