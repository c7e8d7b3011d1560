"""A fixture store with a handful of runs whose every report figure can be worked out by hand.

Runs (all costs set on the spans, so the figures do not depend on prices):
- triage (ana, sales, gpt-5.5): $0.30 accepted, $0.50 rejected, $0.20 no outcome (abandoned after the window)
- summarize (bo, ops, gpt-4o-mini): $0.10, accepted in the run, then a late review says rejected
- looper (bo, ops, gpt-4o-mini): 3 LLM calls with one input hash at $0.01 each, 4 identical searches; no outcome
- capped (cy, sales, gpt-5.5): $0.40 in 1 call, stopped by max_cost_usd; and capped $0.30 in 3 calls, accepted
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from runmeter.exporter import ClickHouseSpanExporter, Spool, Store, Writer
from runmeter.processor import OutcomeEvent, PriceBook, RunProcessor
from tests.spans import make_span, run_root

GPT55, MINI = "gpt-5.5", "gpt-4o-mini"


def _llm(sid: int, parent: int, model: str, cost: float, start: int, inp: int = 1_000, out: int = 100, h: str | None = None, trace: int = 0) -> Any:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out,
        "runmeter.cost.usd": cost, "runmeter.cost.source": "test",
    }
    if h:
        attrs["runmeter.llm.input_hash"] = h
    return make_span(f"chat {model}", sid, parent, trace_id=trace, start_ms=start, attrs=attrs)


def _tool(sid: int, parent: int, name: str, start: int, trace: int) -> Any:
    return make_span(f"execute_tool {name}", sid, parent, trace_id=trace, start_ms=start,
                     attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "runmeter.tool.args_hash": "q"})


def _root(name: str, trace: int, owner: str, project: str, outcome: str | None = None, **kw: Any) -> Any:
    attrs = {"runmeter.run.owner": owner, "runmeter.run.project": project, "runmeter.run.id": f"{name}-{trace}"}
    if outcome:
        attrs["runmeter.run.outcome"] = outcome
    attrs.update(kw.pop("attrs", {}))
    return run_root(name, 1, trace_id=trace, end_ms=500, attrs=attrs, **kw)


def spans() -> list[Any]:
    out: list[Any] = []
    for trace, (cost, outcome) in enumerate([(0.30, "accepted"), (0.50, "rejected"), (0.20, None)], start=1):
        out += [_root("triage", trace, "ana", "sales", outcome), _llm(2, 1, GPT55, cost, 10, trace=trace)]
    out += [_root("summarize", 10, "bo", "ops", "accepted"), _llm(2, 1, MINI, 0.10, 10, inp=20_000, trace=10)]
    out += [_root("looper", 11, "bo", "ops")]
    out += [_llm(2 + i, 1, MINI, 0.01, 10 + i * 20, h="same", trace=11) for i in range(3)]
    out += [_tool(10 + i, 1, "search", 100 + i * 10, trace=11) for i in range(4)]
    stop = {"runmeter.budget.max_cost_usd": 0.35, "runmeter.budget.action": "stop"}
    breach = [("runmeter.budget.exceeded", {"runmeter.budget.limit": "max_cost_usd", "runmeter.budget.value": 0.40,
                                            "runmeter.budget.threshold": 0.35, "runmeter.budget.action": "stop"})]
    out += [_root("capped", 20, "cy", "sales", "failed", attrs=stop, events=breach), _llm(2, 1, GPT55, 0.40, 10, trace=20)]
    out += [_root("capped", 21, "cy", "sales", "accepted", attrs=stop)]
    out += [_llm(2 + i, 1, GPT55, 0.10, 10 + i * 20, trace=21) for i in range(3)]
    return out


def write(url: str, spool_dir: Path, span_list: list[Any], outcomes: Sequence[OutcomeEvent] = ()) -> None:
    """Assemble, price and store spans (and late outcomes) as the exporter does."""
    writer = Writer(Store(url), Spool(spool_dir), background=False)
    exp = ClickHouseSpanExporter(writer=writer, prices=PriceBook())
    proc = RunProcessor(SimpleSpanProcessor(exp), sink=exp.run_sink, mode="remote", background=False)
    for s in span_list:
        proc.on_end(s)
    proc.sweep(force=True)
    if outcomes:
        exp.run_sink.write_outcomes(list(outcomes))
    assert writer.flush(timeout_s=60)


def build(path: Path) -> str:
    url = f"chdb://{path / 'store'}"
    write(url, path / "store-spool", spans(), [OutcomeEvent("summarize-10", "rejected", "wrong summary", time.time_ns(), "review")])
    return url
