"""Run assembly: the spans of one trace in, run records out. Pure and order-independent.

Run roots, in DESIGN.md's order: a span made by ``runmeter.run()`` (it carries
``runmeter.run.root``); else the outermost ``invoke_agent`` span; else, for
GenAI spans under neither, the trace's topmost span (an *implicit* run).
Explicit runs nested in runs are sub-runs, and roll up into their parent.

One call is counted once: nested LLM spans with no run, agent or tool span
between them (an SDK's own span under an instrumentation's, or two
instrumentations of one client) are one *call chain*; the outermost span that
carries tokens is counted, the others are duplicates.

Everything is computed from the set of spans, sorted by (start, span id), so any
arrival order of the same spans gives the same records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter

from runmeter.processor._facts import KIND_AGENT, KIND_LLM, KIND_TOOL, SpanFacts, same_call
from runmeter.processor._loops import LoopDetector
from runmeter.processor._records import RunRecord, Tokens

__all__ = ["Assembly", "ToolCover", "assemble", "is_handoff", "run_id_for"]

_MAX_COVERING_TOOLS = 256  # per trace, the latest: the agent's own tool spans an inferred tool call is checked against


def run_id_for(trace_id: int, span_id: int) -> str:
    return f"{trace_id:032x}-{span_id:016x}"


@dataclass
class Assembly:
    records: list[RunRecord]
    run_of: dict[int, str]  # span id -> run id, for every span in a run
    duplicates: set[int]  # span ids of LLM spans not counted (another span of the chain is)
    implicit_roots: set[int] = field(default_factory=set)


@dataclass
class _Run:
    root: SpanFacts
    run_id: str
    implicit: bool
    parent: _Run | None = None
    members: list[SpanFacts] = field(default_factory=list)
    children: list[_Run] = field(default_factory=list)


_order = attrgetter("start_ns", "span_id")  # (start, span id): the order every result is computed in
_ended = attrgetter("end_ns", "span_id")


class ToolCover:
    """The agent's own tool spans of one trace (a framework's, ``runmeter.tool()``), to tell which
    of runmeter's inferred tool calls (``runmeter.tool.inferred``) they already counted. An inferred
    call runs from the response that asked for the tool to the request that answered it: a tool
    span of the agent's own with the same tool name ending in that time is the same call. (By name
    only: with a few calls answered at once, a match by time alone could pair the wrong two and
    leave one counted twice and another not at all.) Local mode feeds it as spans end, assembly in
    the order they ended: both decide alike."""

    __slots__ = ("_spans",)

    def __init__(self) -> None:
        self._spans: list[list[object]] = []  # [end_ns, name, claimed]

    def add(self, f: SpanFacts) -> None:
        """A tool span of the agent's own, in the order they end (an inferred call is checked
        against the latest: the ones since the response that asked for it). A handoff span (a tool
        kind that is no tool call) covers the call of any name it was: the Agents SDK's
        ``transfer_to_<agent>`` tool, which its spans name "handoff to <agent>"."""
        if len(self._spans) >= _MAX_COVERING_TOOLS:
            del self._spans[0]
        self._spans.append([f.end_ns, f.tool_name or f.name if f.kind == KIND_TOOL else None, False])

    def claim(self, f: SpanFacts) -> bool:
        """Whether a tool span of the agent's own covers the inferred call ``f`` (then it is used up)."""
        name = f.tool_name or f.name
        for wanted in (name, None):
            for s in self._spans:
                if not s[2] and s[1] == wanted and f.start_ns <= s[0] <= f.end_ns:  # type: ignore[operator]
                    s[2] = True
                    return True
        return False


def is_handoff(f: SpanFacts) -> bool:
    """A span of a tool kind that is an agent handing over, not a tool call (see the dialect map)."""
    return f.kind != KIND_TOOL and f.operation == "execute_tool"


def assemble(spans: Iterable[SpanFacts], *, loop_threshold: int = 3, incomplete: bool = False) -> Assembly:
    """Run records for the spans of one trace."""
    facts = sorted(spans, key=_order)
    by_id = {f.span_id: f for f in facts}
    children: dict[int | None, list[SpanFacts]] = defaultdict(list)
    tops: list[SpanFacts] = []
    # What the rules for counting a call once look for, in this one pass: most traces have none of it.
    responses: list[SpanFacts] = []  # LLM spans that name their response
    ours_tools = ours_llm = inferred = False
    for f in facts:
        if f.parent_id is not None and f.parent_id in by_id and f.parent_id != f.span_id:
            children[f.parent_id].append(f)
        else:
            tops.append(f)
        if f.kind == KIND_LLM:
            ours_llm = ours_llm or f.ours
            if f.response_id is not None:
                responses.append(f)
        elif f.kind == KIND_TOOL:
            ours_tools = ours_tools or f.ours
            inferred = inferred or f.inferred

    runs: list[_Run] = []
    run_by_root: dict[int, _Run] = {}
    implicit: dict[int, _Run] = {}  # by its top span, or by the missing parent of its top spans
    chain_of: dict[int, int] = {}  # LLM span -> head of its call chain
    depth: dict[int, int] = {}
    # Agent runs inside a framework's root span that is no run of its own (OpenInference's LangGraph
    # CHAIN root, with an AGENT span per "agent" node step): the root's implicit run is the run.
    orphans: list[tuple[_Run, SpanFacts]] = []

    # Iterative DFS: (span, current explicit/agent run, top span, chain head, depth)
    stack: list[tuple[SpanFacts, _Run | None, SpanFacts, int | None, int]] = [(t, None, t, None, 0) for t in reversed(tops)]
    seen: set[int] = set()
    while stack:
        f, current, top, chain, d = stack.pop()
        if f.span_id in seen:
            continue  # a cycle in parent links: malformed input, each span once
        seen.add(f.span_id)
        depth[f.span_id] = d
        # A nested agent is a sub-run, unless it is the enclosing run's own agent seen again (OpenLLMetry
        # makes a workflow span and an agent span for one LangGraph graph).
        if f.explicit_root or (f.kind == KIND_AGENT and (current is None or _agent(f) != _agent(current.root))):
            run = _Run(f, f.run_id if (f.explicit_root and f.run_id) else run_id_for(f.trace_id, f.span_id), False, current)
            if current is not None:
                current.children.append(run)
            elif not f.explicit_root and f is not top:
                orphans.append((run, top))
            runs.append(run)
            run_by_root[f.span_id] = run
            current = run
        if current is not None:
            current.members.append(f)
        else:
            # Spans whose parent is missing (it went to another collector replica, or was never
            # exported) form one run per missing parent, named after it: when that parent is the
            # run's root, the calls carry the very run id its own replica writes.
            anchor = top.parent_id if top.parent_id is not None and top.parent_id not in by_id else top.span_id
            imp = implicit.get(anchor)
            if imp is None:
                imp = implicit[anchor] = _Run(top, top.run_id or run_id_for(top.trace_id, anchor), True)
            imp.members.append(f)
        if f.kind == KIND_LLM:
            if chain is None:
                chain = f.span_id
            chain_of[f.span_id] = chain
        elif f.kind in (KIND_TOOL, KIND_AGENT) or f.explicit_root:
            chain = None
        for c in reversed(children.get(f.span_id, ())):
            stack.append((c, current, top, chain, d + 1))

    # One call, counted once.
    chains: dict[int, list[SpanFacts]] = defaultdict(list)
    for sid, head in chain_of.items():
        chains[head].append(by_id[sid])
    duplicates: set[int] = set()
    for members in chains.values():
        if len(members) < 2:
            continue
        ours = {m.span_id for m in members if m.ours and not m.duplicate}
        if ours:
            # runmeter's spans count (each request its own, as under the official google-genai
            # instrumentation's one span around automatic function calling); the rest of the chain not.
            counted_ids = {sid for sid in ours if not _under(by_id[sid], ours, by_id)}
            duplicates.update(m.span_id for m in members if m.span_id not in counted_ids)
            continue
        with_tokens = [m for m in members if m.usage is not None]
        # A span already flagged a duplicate where it ended (local mode) has given up its cost.
        pool = [m for m in with_tokens if not m.duplicate] or with_tokens or members
        counted = min(pool, key=lambda m: (depth[m.span_id], m.start_ns, m.span_id))
        duplicates.update(m.span_id for m in members if m is not counted)

    # One response, counted once: LLM spans that are not in one call chain (a framework's span
    # beside the client's) but carry the same response id are one call.
    by_response: dict[str, list[SpanFacts]] = defaultdict(list)
    for f in responses:
        by_response[f.response_id].append(f)  # type: ignore[index]  # responses name theirs
    for members in by_response.values():
        alive = [m for m in members if m.span_id not in duplicates]
        if len(alive) < 2:
            continue
        pool = [m for m in alive if not m.duplicate and m.usage is not None] or alive
        counted = min(pool, key=lambda m: (m.end_ns, m.span_id))  # the first to end, as in local mode
        duplicates.update(m.span_id for m in alive if m is not counted)

    # One tool call, counted once: another instrumentation's tool span with runmeter's tool span of
    # the same tool inside it (runmeter.tool() in a framework's tool) is not counted.
    if ours_tools:
        for f in facts:
            if f.kind == KIND_TOOL and not f.ours and not f.duplicate and _our_tool_inside(f, children):
                duplicates.add(f.span_id)

    # One tool call, counted once: runmeter's inferred tool calls give way to the agent's own tool spans.
    if inferred:
        cover = ToolCover()
        for f in sorted(facts, key=_ended):
            if is_handoff(f):
                cover.add(f)
            if f.kind != KIND_TOOL:
                continue
            if f.inferred:
                if cover.claim(f):
                    duplicates.add(f.span_id)
            elif not f.duplicate and f.span_id not in duplicates:
                cover.add(f)

    # One call seen by two instrumentations with no response id in common (see same_call): each of
    # runmeter's spans pairs with at most one other span; the other is not counted.
    others = [f for f in facts if f.kind == KIND_LLM and not f.ours and f.span_id not in duplicates and f.usage is not None] if ours_llm else []
    if others:
        for f in facts:
            if f.kind != KIND_LLM or not f.ours or f.duplicate or f.span_id in duplicates:
                continue
            twin = next((o for o in others if o.span_id not in duplicates and same_call(f, o)), None)
            if twin is not None:
                duplicates.add(twin.span_id)

    for run, top in orphans:
        anchor = top.parent_id if top.parent_id is not None and top.parent_id not in by_id else top.span_id
        imp = implicit.get(anchor)
        if imp is None:
            imp = implicit[anchor] = _Run(top, top.run_id or run_id_for(top.trace_id, anchor), True)
            imp.members.append(top)
        run.parent = imp
        imp.children.append(run)

    for imp in implicit.values():
        if imp.children or any(m.kind in (KIND_LLM, KIND_TOOL) for m in imp.members):
            runs.append(imp)

    records: dict[int, RunRecord] = {}
    run_of: dict[int, str] = {}
    # Children before parents, so parents can roll them up.
    for run in sorted(runs, key=lambda r: -depth[r.root.span_id]):
        # Spans that name a run whose root is not among them (made in another process, or sent to
        # another replica) make a partial record of that run: ranked below the whole one in storage.
        partial = incomplete or (run.implicit and bool(run.root.run_id) and not run.root.implicit_run)
        records[id(run)] = _record(run, duplicates, loop_threshold, partial, [records[id(c)] for c in run.children])
        for m in run.members:
            run_of[m.span_id] = run.run_id
    ordered = [records[id(r)] for r in sorted(runs, key=lambda r: (depth[r.root.span_id], _order(r.root)))]
    return Assembly(ordered, run_of, duplicates, {r.root.span_id for r in runs if r.implicit})


def _our_tool_inside(tool: SpanFacts, children: dict[int | None, list[SpanFacts]], levels: int = 4) -> bool:
    """Whether runmeter's own tool span of the same tool is within a few levels under ``tool``."""
    name = tool.tool_name or tool.name
    level = children.get(tool.span_id, [])
    for _ in range(levels):
        if any(c.kind == KIND_TOOL and c.ours and not c.inferred and (c.tool_name or c.name) == name for c in level):
            return True
        level = [g for c in level for g in children.get(c.span_id, [])]
        if not level:
            return False
    return False


def _under(f: SpanFacts, ids: set[int], by_id: dict[int, SpanFacts]) -> bool:
    """Whether an ancestor of ``f`` (within the trace) is one of ``ids``."""
    parent, hops = f.parent_id, 0
    while parent is not None and parent in by_id and hops < 64:
        if parent in ids:
            return True
        parent, hops = by_id[parent].parent_id, hops + 1
    return False


def _agent(f: SpanFacts) -> str:
    return f.agent_name or f.run_name or f.name


def _named(root: SpanFacts, members: list[SpanFacts]) -> tuple[str, str, str]:
    """The run's owner, project and task: the root's, else the first member's that names one (one pass)."""
    owner, project, task_id = root.owner or "", root.project or "", root.task_id or ""
    if not (owner and project and task_id):
        for m in members:
            if m.owner is None and m.project is None and m.task_id is None:
                continue  # most spans name none of them
            if not owner and m.owner:
                owner = str(m.owner)
            if not project and m.project:
                project = str(m.project)
            if not task_id and m.task_id:
                task_id = str(m.task_id)
    return owner, project, task_id


def _record(run: _Run, duplicates: set[int], threshold: int, incomplete: bool, subs: list[RunRecord]) -> RunRecord:
    root = run.root
    loops = LoopDetector(threshold)
    cost = Decimal(0)
    external = Decimal(0)
    by_model: dict[str, Decimal] = defaultdict(Decimal)
    t_in = t_out = t_read = t_write = t_reason = 0
    llm_calls = unpriced = estimated = 0
    tools: dict[str, int] = defaultdict(int)
    breaches = []
    end = root.end_ns
    for m in run.members:  # already in (start, span id) order
        if m.end_ns > end:
            end = m.end_ns
        if m.breaches:
            breaches.extend(m.breaches)
        if m.kind == KIND_LLM and m.span_id not in duplicates:
            llm_calls += 1
            u = m.usage
            if u is not None:
                t_in += u.input_tokens
                t_out += u.output_tokens
                t_read += u.cache_read_tokens
                t_write += u.cache_write_tokens
                t_reason += u.reasoning_tokens
            if m.cost is None:
                unpriced += 1
            else:
                cost += m.cost
                by_model[m.model or ""] += m.cost
            if m.estimated:
                estimated += 1
            if m.external_cost is not None:
                external += Decimal(repr(m.external_cost))
            if m.input_hash is not None:
                loops.observe_llm(m.input_hash)
        elif m.kind == KIND_TOOL and not m.duplicate and m.span_id not in duplicates:
            name = m.tool_name or m.name
            tools[name] += 1
            loops.observe_tool(name, m.args_hash, m.resource)
    tokens = Tokens(t_in, t_out, t_read, t_write, t_reason)
    repeated_reads = {r: n for r, n in loops.resources.items() if n > 1}
    for sub in subs:
        cost += sub.cost_usd
        external += sub.external_cost_usd
        for model, c in sub.cost_by_model.items():
            by_model[model] += c
        tokens = tokens + sub.tokens
        llm_calls += sub.llm_calls
        unpriced += sub.unpriced_calls
        estimated += sub.estimated_calls
        for name, n in sub.tool_calls.items():
            tools[name] += n
        end = max(end, sub.end_ns)
    if unpriced == 0:
        pricing = "priced"
    elif unpriced == llm_calls:
        pricing = "unpriced"
    else:
        pricing = "partially_priced"
    outcome = root.outcome or ("failed" if root.error else "")
    reason = root.outcome_reason or ""
    members = run.members
    if not outcome and subs:
        # The sub-run that ended the run failed (an agent raised and the run ended with it, as the
        # Agents SDK's workflow span says OK while its agent's says ERROR): the run failed.
        last = max(subs, key=lambda r: r.end_ns)
        went_on = any(m.start_ns > last.end_ns for m in members if m.kind in (KIND_LLM, KIND_TOOL))
        if last.outcome == "failed" and not went_on:
            outcome, reason = "failed", f"{last.name} failed"
    name = root.run_name or root.agent_name or root.name
    owner, project, task_id = _named(root, members)
    return RunRecord(
        run_id=run.run_id,
        trace_id=f"{root.trace_id:032x}",
        root_span_id=f"{root.span_id:016x}",
        name=name,
        owner=owner,
        project=project,
        task_id=task_id,
        parent_run_id=run.parent.run_id if run.parent is not None else "",
        service_name=root.service,
        start_ns=root.start_ns,
        end_ns=end,
        outcome=outcome,
        outcome_reason=reason,
        cost_usd=cost,
        cost_by_model=dict(sorted(by_model.items())),
        external_cost_usd=external,
        tokens=tokens,
        llm_calls=llm_calls,
        unpriced_calls=unpriced,
        estimated_calls=estimated,
        tool_calls=dict(sorted(tools.items())),
        repeated_context_reads=dict(sorted(repeated_reads.items())),
        loop_signals=tuple(loops.signals()),
        budget=root.budget,
        breaches=tuple(breaches),
        pricing=pricing,
        incomplete=incomplete,
        implicit=run.implicit,
        spans=len(members) + sum(s.spans for s in subs),
    )
