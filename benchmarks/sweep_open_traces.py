"""A collector's sweep with many traces held and none due, beside the walk over every trace it replaced.

A remote-mode ``RunProcessor`` (a collector worker's) sweeps once a second at the default
``quiet_s`` (30 s), holding its lock: at 20,000 spans/s of agent traces it holds ~75,000 of them.
Side by side, on the same processor and the same held traces, in one run (medians of 21):

* ``every trace``: what a sweep did before 2026-11-27 - every open trace's age checked and
  ``RemoteMode.complete`` asked of it;
* ``sweep()``: the sweep as it is - only the quietest traces (in order of their last arrival) and
  the oldest opened are looked at, and each walk stops at the first trace that cannot be due.

Both find nothing due here (the clock moved one second past the last arrival); the check at the
end asserts the sweep wrote no run and kept every trace.

    .venv/bin/python benchmarks/sweep_open_traces.py [--traces 10000,75000,200000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runmeter.processor import InMemoryRunSink, RunLimits, RunProcessor  # noqa: E402
from tests.spans import llm, run_root  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def held(n_traces: int) -> tuple[RunProcessor, Clock, InMemoryRunSink]:
    """A remote processor holding ``n_traces`` traces (a root and an LLM call each), none yet quiet."""
    clock, sink = Clock(), InMemoryRunSink()
    proc = RunProcessor(sink=sink, mode="remote", background=False, clock=clock,
                        limits=RunLimits(quiet_s=30, max_open_runs=n_traces + 1))
    spans = [s for i in range(n_traces) for s in (run_root("agent", 1, trace_id=0x100 + i), llm(2, 1, "gpt-4o-mini", 10, 1, trace_id=0x100 + i))]
    for i in range(0, len(spans), 512):  # as a worker's pipeline hands them over, a request's at a time
        proc.on_end_many(spans[i:i + 512])
        clock.t += 0.001
    clock.t += 1.0
    return proc, clock, sink


def every_trace(proc: RunProcessor, now: float) -> int:
    """The walk a sweep made before: every open trace looked at (lock held), none due here."""
    due = 0
    with proc._lock:
        for trace in list(proc._traces.values()):
            if now - trace.first_seen >= proc.limits.max_run_age_s:
                due += 1
            elif proc._modes.complete(trace, now, False, False) is not None:
                due += 1
    return due


def median_ms(fn: object, rounds: int = 21) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", default="10000,75000,200000", help="open trace counts, comma-separated")
    args = ap.parse_args()
    print(f"{'open traces':>12} {'every trace (ms)':>17} {'sweep() (ms)':>13} {'ratio':>9}")
    for n in (int(x) for x in args.traces.split(",")):
        proc, clock, sink = held(n)
        assert every_trace(proc, clock.t) == 0
        old = median_ms(lambda: every_trace(proc, clock.t))
        new = median_ms(proc.sweep)
        assert sink.runs == [] and proc.open_traces == n, "the sweep must find nothing due here"
        print(f"{n:12,d} {old:17.3f} {new:13.4f} {old / new:8,.0f}x")
        proc.shutdown()


if __name__ == "__main__":
    main()
