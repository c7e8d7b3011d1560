"""The RunProcessor's two modes: where spans come from, when a trace is complete, what is forwarded.

The processor itself (``_processor.py``) is the shared core: trace buffers, bounds, assembly on
its own thread, the sink, lifecycle. A mode answers the questions that differ:

- :class:`LocalMode` (an agent process): spans start here, so each span of a run is stamped at
  ``on_start``, its facts feed the run's live ledger (loops, budgets) at ``on_end``, and the
  enriched copy goes downstream at once. A trace is complete when all its spans have ended plus
  ``grace_s``.
- :class:`RemoteMode` (the collector): spans arrive ended, from OTLP. They are held per trace until
  the root has arrived and the trace has been quiet for ``quiet_s`` (``rootless_quiet_s`` for a
  root that never comes; ``quiet_s`` for spans that came after their run was written), then
  stamped with their run id and forwarded after the run records are written.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span

from runmeter.conventions import attributes as A
from runmeter.conventions import genai as G
from runmeter.core import internal_error
from runmeter.processor._assembly import Assembly, ToolCover, is_handoff, run_id_for
from runmeter.processor._facts import KIND_LLM, KIND_TOOL, SpanFacts, mark_duplicate, remember, same_call
from runmeter.processor._ledger import RunLedger
from runmeter.processor._live import INSTRUMENTATION_SCOPE, LiveRun, current_run
from runmeter.processor._loops import LoopSignal
from runmeter.processor._sdk import add_in_place, attributes_of, copy_with, stamp

if TYPE_CHECKING:
    from runmeter.processor._processor import RunProcessor

__all__ = ["Entry", "LocalMode", "RemoteMode", "Trace", "copy_adding"]

_MAX_WRITTEN_TRACES = 100_000  # remote: traces whose runs were written, to tell late spans from rootless ones
_AGENT_OP = "invoke_agent"
_LLM_START_OPS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_BOUNDARY_OPS = frozenset({"execute_tool", "invoke_agent"})


@dataclass(slots=True)
class Entry:
    """What on_start learned about a live span (local mode)."""

    live: LiveRun | None
    parent: int | None
    top: int
    op: str | None
    run_root: bool = False  # made by runmeter.run(); its run is learned from its first child's context
    ours: bool = False  # made by runmeter's instrumentation
    superseded: bool = False  # another instrumentation's LLM span around runmeter's spans of its call(s)
    our_tools: set[str] | None = None  # tools runmeter.tool() ran inside this span (a framework's tool span)


@dataclass
class Trace:
    first_seen: float
    last_seen: float
    facts: dict[int, SpanFacts] = field(default_factory=dict)
    held: list[tuple[ReadableSpan, dict[str, Any], SpanFacts]] = field(default_factory=list)  # remote: each span, what it gets, its facts
    open: set[int] = field(default_factory=set)  # spans started here and not ended yet (local mode)
    root_seen: bool = False
    due: float | None = None
    late: bool = False  # remote: the trace's run was already written here; these spans came after
    plain: bool = True  # no GenAI span (LLM call, tool call, agent, run root) seen in it yet
    opened: int = 0  # the processor's count of traces opened when this one was: the order a full sweep meets them


def copy_adding(span: ReadableSpan, added: dict[str, Any], owned: bool = False) -> ReadableSpan:
    """The span with ``added`` attributes (an ended span cannot be changed); a None value removes one.
    ``owned``: nobody else holds the span (the collector made it), so they are added to it in place."""
    if owned and add_in_place(span, added):
        return span
    attrs = {**attributes_of(span), **added}
    if None in added.values():
        attrs = {k: v for k, v in attrs.items() if v is not None}
    return copy_with(span, attrs)


_RUN_ID, _RUN_IMPLICIT = A.RUNMETER_RUN_ID, A.RUNMETER_RUN_IMPLICIT
_RECENT_RESPONSES = 4096  # a framework's span ends within moments of the client's
_RECENT_COVERS = 1024  # traces whose tool spans an inferred tool call may meet (within moments too)
_RECENT_PER_PARENT = 8  # runmeter's calls under one parent that a framework's span may still pair with


class LocalMode:
    name = "local"

    def __init__(self, core: RunProcessor) -> None:
        self.core = core
        # (trace id, response id) of the LLM calls seen lately: a second span with one of them is
        # the same call seen twice (a framework's span beside the client's), counted once.
        self._responses: OrderedDict[tuple[int, str], None] = OrderedDict()
        # runmeter's own LLM spans that ended lately, by (trace, parent): another instrumentation's
        # span of the same call (see same_call) ends after them and is then not counted.
        self._ours: OrderedDict[tuple[int, int | None], deque[SpanFacts]] = OrderedDict()
        # The agent's own tool spans by trace: runmeter's inferred tool call of the same call gives way.
        self._covers: OrderedDict[int, ToolCover] = OrderedDict()

    # --- on_start ---------------------------------------------------------------------------

    def start(self, span: Span, parent_context: Context | None) -> None:
        core = self.core
        ctx = span.get_span_context()
        parent = span.parent
        parent_id = parent.span_id if parent is not None and not parent.is_remote else None
        parent_entry = core._live.get(parent_id) if parent_id is not None else None
        attrs = attributes_of(span)
        op = attrs.get(G.GEN_AI_OPERATION_NAME)
        op = op if isinstance(op, str) else None
        # The parent's run, else the one runmeter.run() put in the context (a nested run's
        # root has no run entry of its own, so its children look in the context).
        live = parent_entry.live if parent_entry is not None else None
        if live is None:
            live = current_run(parent_context)
            if live is not None and parent_entry is not None and parent_entry.run_root:
                root = live.root_span
                if root is not None and root.get_span_context().span_id == parent_id:
                    parent_entry.live = live  # the run's root: its other children find the run here
        run_root = attrs.get(A.RUNMETER_RUN_ROOT) is True
        if run_root:
            live = None  # the run's own root span; runmeter.run() stamps it and attaches the LiveRun
        else:
            if live is None and op == _AGENT_OP:
                # The outermost invoke_agent span of another instrumentation: a run of its own.
                run_id = run_id_for(ctx.trace_id, ctx.span_id)
                ledger = RunLedger(run_id, loop_threshold=core.limits.loop_threshold)
                live = LiveRun(run_id, ledger, {A.RUNMETER_RUN_ID: run_id}, span)
            if live is not None and live.stamp:
                stamp(span, live.stamp, typed=True)
        top = parent_entry.top if parent_entry is not None else ctx.span_id
        with core._lock:
            scope = span.instrumentation_scope
            core._live[ctx.span_id] = Entry(live, parent_id, top, op, run_root, scope is not None and scope.name == INSTRUMENTATION_SCOPE)
            if ctx.trace_id not in core._cut:
                trace = core._trace(ctx.trace_id)
                trace.open.add(ctx.span_id)
                trace.due = None

    # --- on_end -----------------------------------------------------------------------------

    def read(self, span: ReadableSpan, facts: SpanFacts, added: dict[str, Any]) -> None:
        """Before buffering: flag a call seen twice, feed the live ledger, name the implicit run."""
        core = self.core
        entry = core._live.get(facts.span_id)
        outer = self._llm_ancestor(entry) if facts.kind == KIND_LLM and entry is not None else None
        if outer is not None and facts.ours and not outer.ours:
            # Another instrumentation's span around runmeter's (the official google-genai one wraps
            # the public method, runmeter each request): runmeter's spans count, the outer one not.
            outer.superseded = True
            if facts.usage is not None:
                self._remember_ours(facts)
        elif outer is not None:
            mark_duplicate(facts, added)  # an SDK's own span under an instrumentation's
        elif facts.kind == KIND_LLM and entry is not None and entry.superseded:
            mark_duplicate(facts, added)  # it wrapped runmeter's own span(s) of its call(s)
        elif facts.kind == KIND_TOOL and not facts.ours and entry is not None and entry.our_tools \
                and (facts.tool_name or facts.name) in entry.our_tools:
            mark_duplicate(facts, added)  # a framework's tool span around runmeter.tool() of the same tool
        elif facts.inferred and self._covered(facts):
            mark_duplicate(facts, added)  # the agent's own tool span of this call counted it
        elif facts.kind == KIND_LLM and facts.response_id is not None and self._seen_response(facts.trace_id, facts.response_id):
            mark_duplicate(facts, added)  # the response a sibling span already counted
        elif facts.kind == KIND_LLM and not facts.ours and self._twin_of_ours(facts):
            mark_duplicate(facts, added)  # a framework's span of a call runmeter's span counted
        else:
            if facts.kind == KIND_TOOL:
                if not facts.inferred:
                    self._tool_cover(facts.trace_id).add(facts)
            elif facts.operation == "execute_tool" and is_handoff(facts):
                self._tool_cover(facts.trace_id).add(facts)
            if facts.ours and not facts.inferred:  # runmeter's own spans feed the ledger themselves
                if facts.kind == KIND_TOOL and entry is not None:
                    self._note_our_tool(entry, facts.tool_name or facts.name)
                if facts.kind == KIND_LLM and facts.usage is not None:
                    self._remember_ours(facts)
                    # Its parent, if another instrumentation's, may be that one's span of this very
                    # call, told an LLM call only when it ends (OpenInference's "response" span): if
                    # it is, it is not counted (see the superseded branch above).
                    parent = core._live.get(entry.parent) if entry is not None and entry.parent is not None else None
                    if parent is not None and not parent.ours:
                        parent.superseded = True
            else:
                self._feed_ledger(facts, entry)
        if entry is not None and entry.live is None and facts.kind in (KIND_LLM, KIND_TOOL) and not facts.run_id:
            # GenAI span outside any explicit or agent run: the implicit run of its topmost span.
            added[A.RUNMETER_RUN_ID] = run_id_for(facts.trace_id, entry.top)
            added[A.RUNMETER_RUN_IMPLICIT] = True
            facts.implicit_run = True

    def cut(self, facts: SpanFacts) -> None:
        self.core._live.pop(facts.span_id, None)

    def buffer(self, trace: Trace, span: ReadableSpan, facts: SpanFacts, added: dict[str, Any], now: float) -> None:
        trace.open.discard(facts.span_id)
        if not trace.open:
            trace.due = now + self.core.limits.grace_s

    def forward(self, span: ReadableSpan, facts: SpanFacts, added: dict[str, Any]) -> ReadableSpan | None:
        """The copy to hand downstream now (none for an inferred tool call that the agent's own
        tool span covers: it would only say that call again, in every trace view)."""
        if facts.inferred and facts.duplicate:
            return None
        out = copy_adding(span, added) if added else span
        if added:  # what the copy says now
            facts.run_id = added.get(A.RUNMETER_RUN_ID, facts.run_id)
        remember(out, facts)
        return out

    def _feed_ledger(self, facts: SpanFacts, entry: Entry | None) -> None:
        if entry is None or entry.live is None:
            return
        live = entry.live
        signals: list[LoopSignal] = []
        if facts.kind == KIND_LLM:
            signals = live.ledger.record_llm_call(facts.usage, facts.cost, facts.input_hash)
        elif facts.kind == KIND_TOOL:
            signals = live.ledger.record_tool_call(facts.tool_name or facts.name, facts.args_hash, facts.resource)
        if signals:
            live.note_signals(signals)

    def _note_our_tool(self, entry: Entry, name: str) -> None:
        """Tell the enclosing spans (a few levels up) that runmeter.tool() ran this tool inside them."""
        parent = entry.parent
        for _ in range(4):
            up = self.core._live.get(parent) if parent is not None else None
            if up is None:
                return
            if not up.ours:
                if up.our_tools is None:
                    up.our_tools = set()
                up.our_tools.add(name)
            parent = up.parent

    def _tool_cover(self, trace_id: int) -> ToolCover:
        cover = self._covers.get(trace_id)
        if cover is None:
            cover = self._covers[trace_id] = ToolCover()
            if len(self._covers) > _RECENT_COVERS:
                self._covers.popitem(last=False)
        return cover

    def _covered(self, facts: SpanFacts) -> bool:
        cover = self._covers.get(facts.trace_id)
        return cover is not None and cover.claim(facts)

    def _remember_ours(self, facts: SpanFacts) -> None:
        recent = self._ours.get((facts.trace_id, facts.parent_id))
        if recent is None:
            recent = self._ours[(facts.trace_id, facts.parent_id)] = deque(maxlen=_RECENT_PER_PARENT)
        recent.append(facts)
        if len(self._ours) > _RECENT_RESPONSES:
            self._ours.popitem(last=False)

    def _twin_of_ours(self, facts: SpanFacts) -> bool:
        ours = self._ours.get((facts.trace_id, facts.parent_id))
        if not ours:
            return False
        for i, mine in enumerate(ours):
            if same_call(mine, facts):
                del ours[i]  # paired: one span of theirs per call of ours
                return True
        return False

    def _seen_response(self, trace_id: int, response_id: str) -> bool:
        key = (trace_id, response_id)
        if key in self._responses:
            return True
        self._responses[key] = None
        if len(self._responses) > _RECENT_RESPONSES:
            self._responses.popitem(last=False)
        return False

    def _llm_ancestor(self, entry: Entry) -> Entry | None:
        """The nearest ancestor in the same call chain that is an LLM call (an SDK span under ours,
        or ours under another instrumentation's), if any."""
        parent = entry.parent
        for _ in range(8):
            if parent is None:
                return None
            up = self.core._live.get(parent)
            if up is None or up.op in _BOUNDARY_OPS:
                return None
            if up.op in _LLM_START_OPS:
                return up
            parent = up.parent
        return None

    # --- completion -------------------------------------------------------------------------

    def new_trace(self, trace_id: int, now: float) -> Trace:
        return Trace(now, now)

    def evicted(self, trace_id: int, trace: Trace, incomplete: bool) -> None:
        pass

    def complete(self, trace: Trace, now: float, force: bool, final: bool) -> bool | None:
        """None while the trace is not done; else whether it is incomplete."""
        if not trace.open and trace.facts and (force or final or (trace.due is not None and now >= trace.due)):
            return False
        if final:
            return bool(trace.open)
        return None

    def assembled(self, trace: Trace) -> None:
        live = self.core._live
        for sid in trace.facts:
            live.pop(sid, None)
        for sid in trace.open:  # spans that never ended (leaked by the program): forgotten too
            live.pop(sid, None)

    def written(self, done: list[tuple[Trace, Assembly | None]]) -> None:
        pass  # spans went downstream as they ended


class RemoteMode:
    name = "remote"

    def __init__(self, core: RunProcessor, owned: bool = False) -> None:
        self.core = core
        self.owned = owned  # the spans are the processor's to change (see RunProcessor's owns_spans)
        self._written: OrderedDict[int, None] = OrderedDict()  # traces assembled whole, newest last

    def start(self, span: Span, parent_context: Context | None) -> None:
        pass  # spans arrive ended

    def read(self, span: ReadableSpan, facts: SpanFacts, added: dict[str, Any]) -> None:
        pass  # duplicates and run ids are known only once the trace is assembled

    def cut(self, facts: SpanFacts) -> None:
        pass

    def buffer(self, trace: Trace, span: ReadableSpan, facts: SpanFacts, added: dict[str, Any], now: float) -> None:
        trace.held.append((span, added, facts))

    def forward(self, span: ReadableSpan, facts: SpanFacts, added: dict[str, Any]) -> ReadableSpan | None:
        return None  # held for assembly

    def new_trace(self, trace_id: int, now: float) -> Trace:
        return Trace(now, now, late=trace_id in self._written)

    def evicted(self, trace_id: int, trace: Trace, incomplete: bool) -> None:
        if trace.root_seen and not incomplete:
            self._written[trace_id] = None
            self._written.move_to_end(trace_id)
            if len(self._written) > _MAX_WRITTEN_TRACES:
                self._written.popitem(last=False)

    def complete(self, trace: Trace, now: float, force: bool, final: bool) -> bool | None:
        lim = self.core.limits
        idle = now - trace.last_seen
        # Spans that came after their trace's run was written wait only quiet_s: their root is
        # known not to be coming (it was in that run).
        rootless = not trace.root_seen and idle >= (lim.quiet_s if trace.late else lim.rootless_quiet_s)
        if force or final or rootless or (trace.root_seen and idle >= lim.quiet_s):
            return (final or rootless) and not trace.root_seen
        return None

    def assembled(self, trace: Trace) -> None:
        pass

    def written(self, done: list[tuple[Trace, Assembly | None]]) -> None:
        """After the runs: once a span is downstream, the collector may forget it."""
        for trace, assembly in done:
            self._forward_held(trace, assembly)

    def _forward_held(self, trace: Trace, assembly: Assembly | None) -> None:
        run_of = assembly.run_of if assembly is not None else {}
        implicit = assembly.implicit_roots if assembly is not None else set()
        duplicates = assembly.duplicates if assembly is not None else set()
        roots = {r.run_id for r in assembly.records} if assembly is not None else set()
        implicit_runs = {run_of.get(r) for r in implicit}
        out_spans: list[ReadableSpan] = []
        owned = self.owned
        for span, added, facts in trace.held:
            out: ReadableSpan = span
            try:
                sid = facts.span_id
                run_id = run_of.get(sid)
                if run_id is not None and run_id in roots and not facts.run_id:
                    added[_RUN_ID] = facts.run_id = run_id
                    if run_id in implicit_runs:
                        added[_RUN_IMPLICIT] = True
                if sid in duplicates:
                    mark_duplicate(facts, added)  # an inferred tool call too: every acknowledged span is stored
                if added and not (owned and add_in_place(span, added)):
                    out = copy_adding(span, added)
                remember(out, facts)  # the exporter reads them instead of reading the span again
            except Exception as exc:
                internal_error("forward", exc)
                out = span
            out_spans.append(out)
        for d in self.core._downstream:
            many = getattr(d, "on_end_many", None)  # the collector's Tracker takes a trace's spans at once
            if many is not None:
                many(out_spans)
            else:
                for s in out_spans:
                    d.on_end(s)
