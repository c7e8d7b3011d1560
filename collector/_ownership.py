"""Which project each trace and run belongs to, so a token bound to one project cannot touch another's.

The rule: **a trace and a run belong to the project of their first writer.** A span sent with a
token bound to project P is refused (in ``partial_success``, counted as ``foreign_project``) when
its trace already belongs to another project - it would join that project's run and bill it -
or when it names (``runmeter.run.id``) a run of another project - its record would replace that
run's. Tokens bound to no project (operators) write anything, and their spans still make their
traces and runs owned, by the project the spans name.

Ownership is learned from what this collector accepts (a bounded map, newest kept) and, for a
trace or run it has not seen, read from the store once (``runmeter_trace_owners`` by trace id,
``runmeter_runs`` by run id), then remembered. With an embedded store, which no other process can
write while the collector has it open, :class:`StoreIds` tells the ids the store cannot hold: those
need no lookup (most new traces). What the log holds at a start, not yet written, is learned from
the log before any request is taken (:meth:`Ownership.learn`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from runmeter.conventions import attributes as A
from runmeter.core import Thread

try:
    from rbloom import Bloom
except ImportError:  # the collector extra not installed: every id not seen here is looked up
    Bloom = None  # type: ignore[assignment,misc]

__all__ = ["Lookup", "Ownership", "Span", "StoreIds", "remove", "spans_of"]

_log = logging.getLogger(__name__)

# (trace ids in hex, run ids) -> (project by trace id, project by run id), as stored.
Lookup = Callable[[list[str], list[str]], tuple[dict[str, str], dict[str, str]]]
# What ownership reads of a span: its (resource, scope, span) position, trace id in hex, run id,
# and the project it writes.
Span = tuple[tuple[int, int, int], str, "str | None", str]


def _string(kvs: Iterable[Any], key: str) -> str | None:
    for kv in kvs:
        if kv.key == key:
            v = kv.value
            kind = v.WhichOneof("value")
            if kind == "string_value":
                return v.string_value or None
            if kind in ("int_value", "double_value", "bool_value"):
                return str(getattr(v, kind))
    return None


_HEX = frozenset("0123456789abcdef")


def _is_generated(run_id: str) -> bool:
    return len(run_id) == 49 and run_id[32] == "-" and _HEX.issuperset(run_id[:32]) and _HEX.issuperset(run_id[33:])


# Run ids longer than this are kept in memory by their digest: a client may send ids of up to
# 65,536 characters, and 200,000 of those would be 13 GB.
_LONG_ID = 128


def _held(run_id: str) -> str:
    """How a run id is kept in the map of owners: as it is, or past ``_LONG_ID`` characters by its digest."""
    if len(run_id) <= _LONG_ID:
        return run_id
    return "\0" + hashlib.blake2b(run_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class _Bounded(OrderedDict[str, str]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class _Round:
    """One store lookup, for the ids of every request that asked while the one before it ran."""

    __slots__ = ("traces", "runs", "done", "found")

    def __init__(self) -> None:
        self.traces: set[str] = set()
        self.runs: set[str] = set()
        self.done = False
        self.found: tuple[dict[str, str], dict[str, str]] = ({}, {})


# A turn with no lookup under way waits this long for more requests before it runs: in the
# benchmark's token run (benchmarks/collector_ingest.py) 2 ms made a third fewer lookups (73-75 ->
# 50 per 120 requests, 0.57 -> 0.36 s of lookups); 5 ms fewer still, with no more acknowledged.
_GATHER_S = 0.002


class _GroupLookup:
    """Store lookups in turns, each for all the requests waiting, as a log commits in groups.

    A lookup is a query or two on the store: 2-3 milliseconds, ~7 on an embedded store whose
    cores are busy with the workers (beside the inserts, not after them: ``Writer.query``). Every request with a trace not seen here
    waits for one, and new traces are most requests, so one lookup per request would cap intake at
    a few requests per lookup time. Requests that ask while a lookup runs join the next one, which
    one of them runs when it ends: each waits for at most the lookup under way and its own. A turn
    that finds no lookup under way stays open ``gather_s`` for the requests right behind it.
    """

    def __init__(self, lookup: Lookup, gather_s: float) -> None:
        self._lookup = lookup
        self._gather_s = gather_s  # how long a turn stays open for more requests before it runs
        self._cond = threading.Condition()
        self._busy = False
        self._open: _Round | None = None  # the next round, gathering ids
        self.count = 0

    def __call__(self, traces: list[str], runs: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """The stored owners of these traces and runs (of those the store knows); ({}, {}) when
        the store cannot be asked."""
        with self._cond:
            rnd = self._open
            if rnd is None:
                rnd = self._open = _Round()
            rnd.traces.update(traces)
            rnd.runs.update(runs)
            while not rnd.done:
                if not self._busy and self._open is rnd:
                    self._busy = True
                    if self._gather_s > 0:
                        self._cond.wait(self._gather_s)  # the round stays open: requests asking meanwhile join it
                    self._open = None
                    break
                self._cond.wait()
            else:
                return rnd.found
        try:
            rnd.found = self._lookup(sorted(rnd.traces), sorted(rnd.runs))
        except Exception as exc:  # noqa: BLE001 - the store is down: first writer here owns it
            _log.warning("cannot ask the store who owns %d trace(s) and %d run(s) (%s): their first writer here owns them",
                         len(rnd.traces), len(rnd.runs), exc)
        finally:
            with self._cond:
                self.count += 1
                rnd.done, self._busy = True, False
                self._cond.notify_all()
        return rnd.found


# What StoreIds is sized for: 12 MB, a false "may hold" for 1 % of new ids with this many in it;
# with twice as many, 16 %, each a lookup as every new id was without the filter.
_STORE_IDS = 10_000_000
_FALSE_RATE = 0.01


class StoreIds:
    """The trace and run ids an embedded store may hold: an id it cannot hold needs no lookup.

    chDB opens a store for one process at a time, so while the collector has it open every id in
    it was there when the filter was filled (``pages``: the trace ids of ``runmeter_trace_owners``
    and the run ids of ``runmeter_runs``, scanned once on a thread of its own) or was accepted
    here since (:meth:`add`, which :class:`Ownership` calls before the request is logged, so before
    anything of it can be stored). A Bloom filter (rbloom): never a false "cannot hold"; a false
    "may hold" (1 % with ``size`` ids in it, more past that) costs the lookup every new id cost
    without it. Until the scan has ended every id may be held. A store with other writers (a
    ClickHouse server: other replicas, agents writing to it directly) gets no filter.
    """

    def __init__(self, pages: Callable[[], Iterator[list[str]]], size: int = _STORE_IDS) -> None:
        assert Bloom is not None, "StoreIds needs rbloom (the collector extra)"
        self._pages = pages
        self._bloom = Bloom(size, _FALSE_RATE)
        self._lock = threading.Lock()
        self._filled = False
        self._stop = threading.Event()
        self._thread = Thread(target=self._fill, name="runmeter-store-ids", daemon=True)

    def start(self) -> None:
        """Scan the store's ids (after :meth:`add` has been given what the log holds unwritten)."""
        self._thread.start()

    @property
    def filled(self) -> bool:
        return self._filled

    def add(self, ids: list[str]) -> None:
        if ids:
            with self._lock:
                self._bloom.update(ids)

    def may_hold(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` the store may hold (all of them until the scan has ended)."""
        if not self._filled:
            return ids
        with self._lock:
            bloom = self._bloom
            return [i for i in ids if i in bloom]

    def close(self) -> None:
        self._stop.set()

    def _fill(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                for page in self._pages():
                    self.add(page)
                    if self._stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - not reachable yet: ids are looked up meanwhile, as without a filter
                _log.warning("cannot read the ids the store holds yet (%s); retrying in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._filled = True
            return


class Ownership:
    def __init__(
        self, lookup: Lookup | None, max_entries: int = 200_000, gather_s: float = _GATHER_S, store_ids: StoreIds | None = None,
    ) -> None:
        self._lookup = _GroupLookup(lookup, gather_s) if lookup is not None else None
        self._traces = _Bounded(max_entries)
        self._runs = _Bounded(max_entries)
        self._lock = threading.Lock()
        self.store_ids = store_ids  # ids the store cannot hold are not looked up

    @property
    def lookups(self) -> int:
        """Store lookups made (each for the requests waiting at its turn)."""
        return self._lookup.count if self._lookup is not None else 0

    def admit(self, req: ExportTraceServiceRequest, project: str | None) -> int:
        """Remove from ``req`` the spans ``project``'s token may not write; learn the owners of the
        rest. Returns how many spans were removed. Never raises: a store that cannot be asked
        leaves unknown traces to their first writer here."""
        foreign = self.decide(spans_of(req, project), project)
        remove(req, foreign)
        return len(foreign)

    def learn(self, spans: list[Span]) -> None:
        """Owners from spans already accepted (what the log holds at a start, not yet written)."""
        self.decide(spans, None)

    def decide(self, spans: list[Span], project: str | None) -> list[tuple[int, int, int]]:
        """The positions of the spans ``project``'s token may not write, of these (as :meth:`admit`
        reads them from a parsed request, or ``_convert.owners_bytes`` from its bytes); learns the
        owners of the rest."""
        if not spans:
            return []
        with self._lock:
            # A run id made by runmeter (<trace id>-<root span id>) names its trace too: that trace's
            # owner owns the run, whether or not a span ever carried the id.
            named_traces = {r[:32] for _, _, r, _ in spans if r and _is_generated(r)}
            unknown_traces = sorted({t for _, t, _, _ in spans if t not in self._traces} | {t for t in named_traces if t not in self._traces})
            unknown_runs = sorted({r for _, _, r, _ in spans if r and _held(r) not in self._runs})
        stored_traces: dict[str, str] = {}
        stored_runs: dict[str, str] = {}
        ids = self.store_ids
        if project is not None and ids is not None and (unknown_traces or unknown_runs):
            unknown_traces, unknown_runs = _may_hold(ids, unknown_traces, unknown_runs)
        if project is not None and self._lookup is not None and (unknown_traces or unknown_runs):
            stored_traces, stored_runs = self._lookup(unknown_traces, unknown_runs)
        foreign: list[tuple[int, int, int]] = []
        new_ids: list[str] = []  # learned here first: from now on the store may hold them
        with self._lock:
            for trace, owner_ in stored_traces.items():
                self._traces.setdefault(trace, owner_)
            for run, owner_ in stored_runs.items():
                self._runs.setdefault(_held(run), owner_)
            for at, t, r, writes in spans:
                owner = self._traces.get(t)
                run_owner = (self._runs.get(_held(r)) or (self._traces.get(r[:32]) if _is_generated(r) else None)) if r else None
                if project is not None and ((owner is not None and owner != project) or (run_owner is not None and run_owner != project)):
                    foreign.append(at)
                    continue
                if owner is None:
                    self._traces.put(t, writes)
                    new_ids.append(t)
                if r and run_owner is None:
                    self._runs.put(_held(r), writes)
                    new_ids.append(r)
            if ids is not None:  # before the request is logged, so before any of it can be stored
                ids.add(new_ids)
        return foreign


def _may_hold(ids: StoreIds, traces: list[str], runs: list[str]) -> tuple[list[str], list[str]]:
    """The traces and runs of these the store may hold. A run id runmeter made names its trace: its
    record is written from that trace's spans, so it may be held when the trace may be."""
    named = {r: r[:32] for r in runs if _is_generated(r)}
    held = set(ids.may_hold(traces + runs + list(named.values())))
    return [t for t in traces if t in held], [r for r in runs if r in held or named.get(r) in held]


def spans_of(req: ExportTraceServiceRequest, project: str | None) -> list[Span]:
    """What ownership reads of each span of a parsed request sent with ``project``'s token (or none)."""
    spans: list[Span] = []
    for i, rs in enumerate(req.resource_spans):
        resource_project = _string(rs.resource.attributes, A.RUNMETER_RUN_PROJECT)
        for j, ss in enumerate(rs.scope_spans):
            for k, s in enumerate(ss.spans):
                if len(s.trace_id) != 16:
                    continue  # refused by the check already
                writes = project or _string(s.attributes, A.RUNMETER_RUN_PROJECT) or resource_project or ""
                spans.append(((i, j, k), s.trace_id.hex(), _string(s.attributes, A.RUNMETER_RUN_ID), writes))
    return spans


def remove(req: ExportTraceServiceRequest, positions: list[tuple[int, int, int]]) -> None:
    """Delete the spans at these (resource, scope, span) positions, given in request order."""
    for i, j, k in reversed(positions):  # from the last, so the earlier positions stay right
        del req.resource_spans[i].scope_spans[j].spans[k]
