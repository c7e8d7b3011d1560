"""The cost of instrumenting one Gemini and one Bedrock call: bare, the official instrumentation
where one can load beside these SDKs, runmeter.

The network is taken out: google-genai gets an ``httpx2.MockTransport`` answering a fixed
``generateContent`` body; botocore gets a ``before-send`` handler answering a fixed Converse
body (request signing, serialization and parsing still run). Variants run interleaved, round
after round, in one process; the script prints the median time per call and the median of each
round's ratio to the bare call (the machine's load cancels out in a ratio).

Official instrumentations: ``opentelemetry-instrumentation-botocore`` (its Bedrock extension
makes GenAI spans) for Bedrock, ``opentelemetry-instrumentation-google-genai`` for Gemini (it pins
google-genai < 3 and a newer ``opentelemetry-util-genai`` than the OpenAI benchmark's official
instrumentation, so ``make bench`` runs this script in ``.venv-frameworks``, which has both, and
loads it with ``skip_dep_check``). Where one is not installed, the bare call is the comparison.

Target: runmeter's ratio <= the official instrumentation's, and small beside the bare call.

    make bench    # or: .venv-bench/bin/python benchmarks/provider_overhead.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

GEMINI_BODY = json.dumps({
    "candidates": [{"content": {"parts": [{"text": "Three unread, one urgent."}], "role": "model"}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 57, "candidatesTokenCount": 21, "totalTokenCount": 78, "cachedContentTokenCount": 32},
    "modelVersion": "gemini-2.5-flash", "responseId": "bench",
}).encode()
CONVERSE_BODY = json.dumps({
    "output": {"message": {"role": "assistant", "content": [{"text": "Three unread, one urgent."}]}}, "stopReason": "end_turn",
    "usage": {"inputTokens": 57, "outputTokens": 21, "totalTokens": 78}, "metrics": {"latencyMs": 100},
}).encode()


class NullExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def gemini_call() -> Callable[[], None]:
    import httpx2
    from google import genai

    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=GEMINI_BODY, headers={"content-type": "application/json"}))
    client = genai.Client(api_key="bench", http_options={"base_url": "https://generativelanguage.googleapis.com",
                                                         "httpx_client": httpx2.Client(transport=transport)})
    return lambda: client.models.generate_content(model="gemini-2.5-flash", contents="Summarize the inbox.")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body


def bedrock_call() -> Callable[[], None]:
    import boto3
    from botocore.awsrequest import AWSResponse

    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="bench")

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {"content-type": "application/json"}, _Raw(CONVERSE_BODY))

    client.meta.events.register("before-send.bedrock-runtime.Converse", answer)
    messages = [{"role": "user", "content": [{"text": "Summarize the inbox."}]}]
    return lambda: client.converse(modelId="us.anthropic.claude-haiku-4-5-20251001-v1:0", messages=messages)


def measure(fn: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _instrumented(make: Any, instrumentor: Any, calls: int, **kwargs: Any) -> Callable[[], float]:
    def run() -> float:
        instrumentor.instrument(**kwargs)
        try:
            return measure(make(), calls)
        finally:
            instrumentor.uninstrument()

    return run


def bench(label: str, make: Callable[[], Callable[[], None]], variants: dict[str, Callable[[], float]], calls: int, rounds: int) -> None:
    bare_call = make()
    variants = {"bare": lambda: measure(bare_call, calls), **variants}
    results: dict[str, list[float]] = {k: [] for k in variants}
    ratios: dict[str, list[float]] = {k: [] for k in variants if k != "bare"}
    rng = random.Random(1)
    for r in range(rounds + 1):  # the first round warms up and is dropped
        order = list(variants)
        rng.shuffle(order)
        t = {name: variants[name]() for name in order}
        if r == 0:
            continue
        for name, v in t.items():
            results[name].append(v)
        for name in ratios:
            ratios[name].append(t[name] / t["bare"])
    print(f"{label}: calls per round {calls}, rounds {rounds}, network: in-process")
    for name, v in results.items():
        ratio = statistics.median(ratios[name]) if name in ratios else 1.0
        print(f"  {name:<28} median {statistics.median(v) * 1e6:8.1f} us/call   median ratio to bare {ratio:.3f}x")
    official = [n for n in ratios if n != "runmeter"]
    if official:
        off, ours = statistics.median(ratios[official[0]]), statistics.median(ratios["runmeter"])
        print(f"  runmeter {'meets' if ours <= off else 'misses'} the target (ratio <= {official[0]}'s: {ours:.3f}x vs {off:.3f}x), "
              "while also pricing and checking the budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import runmeter
    from runmeter.instrumentation import BedrockInstrumentor, GeminiInstrumentor
    from runmeter.processor import PriceBook

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    run = runmeter.run("bench", budget=runmeter.Budget(max_cost_usd=1e9, max_llm_calls=10**9), tracer_provider=provider)
    run.__enter__()  # runmeter also prices each call and checks the run's budget
    ours = {"tracer_provider": provider, "prices": PriceBook(), "providers": {}}

    gemini: dict[str, Callable[[], float]] = {"runmeter": _instrumented(gemini_call, GeminiInstrumentor(), args.calls, **ours)}
    try:
        from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor

        gemini = {"official google-genai": _instrumented(gemini_call, GoogleGenAiSdkInstrumentor(), args.calls,
                                                         tracer_provider=provider, skip_dep_check=True), **gemini}
    except ImportError:
        print("(opentelemetry-instrumentation-google-genai is not installed: Gemini against the bare call alone)")
    bench("Gemini generate_content", gemini_call, gemini, args.calls, args.rounds)

    variants = {"runmeter": _instrumented(bedrock_call, BedrockInstrumentor(), args.calls, **ours)}
    try:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

        variants = {"official botocore": _instrumented(bedrock_call, BotocoreInstrumentor(), args.calls, tracer_provider=provider),
                    **variants}
    except ImportError:
        print("(opentelemetry-instrumentation-botocore is not installed: Bedrock against the bare call alone)")
    bench("Bedrock converse", bedrock_call, variants, args.calls, args.rounds)
    run.__exit__(None, None, None)


if __name__ == "__main__":
    main()
