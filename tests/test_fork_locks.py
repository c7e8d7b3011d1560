"""A process forked while another thread holds one of runmeter's locks must not hang.

``os.fork`` copies a held lock without the thread holding it. Seen in make test: a worker forked
while the parent's span processor thread was writing to the spool waited on the spool's lock for
good (tests/test_storage_processes.py's forked workers, now and then). Here a parent thread holds
each lock the child needs for its first span, price or run update at the moment of the fork; the
child must finish its work (an alarm kills it if it waits).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from runmeter.core import internal_error_counts
from runmeter.exporter import Batch, Spool
from runmeter.processor import PriceBook, RunLedger, TokenUsage

CHILD_TIMEOUT_S = 10


@contextmanager
def _held(lock: Any) -> Iterator[None]:
    """``lock`` held by another thread of this process until the block ends."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            done.wait()

    t = threading.Thread(target=hold)
    t.start()
    taken.wait()
    try:
        yield
    finally:
        done.set()
        t.join()


def _in_child(work: Callable[[], object], while_held: Any) -> int:
    """Fork while ``while_held`` is held by another thread; the child's exit status (0: done)."""
    with _held(while_held):
        pid = os.fork()
        if pid == 0:  # the child: one thread, the copy of a held lock
            signal.alarm(CHILD_TIMEOUT_S)  # a hang ends in SIGALRM, not in a hung test run
            try:
                work()
            except BaseException:
                os._exit(1)
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status


def test_a_child_forked_while_the_spool_is_being_written_writes_to_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    batch = Batch.of({"t": {"columns": ["a"], "rows": [[1]]}})
    assert _in_child(lambda: spool.write(batch), spool._lock) == 0
    assert len(list(tmp_path.glob("*.batch.json"))) == 1  # the child's batch, whole


def test_a_child_forked_while_a_price_is_being_resolved_prices_its_calls() -> None:
    prices = PriceBook()

    def price() -> None:
        cost = prices.price("openai", "gpt-4o-mini", TokenUsage(1000, 100))
        assert cost.total == Decimal("0.00021")  # 1,000 x $0.15/M + 100 x $0.60/M

    assert _in_child(price, prices._lock) == 0


def test_a_child_forked_while_a_run_is_being_updated_updates_it() -> None:
    ledger = RunLedger("run-1")
    assert _in_child(lambda: ledger.record_tool_call("search", "q1"), ledger._lock) == 0


def test_a_child_forked_while_a_failure_is_being_counted_counts_its_own() -> None:
    from runmeter.core import _selfcheck

    assert _in_child(internal_error_counts, _selfcheck._lock) == 0


def test_the_parents_locks_still_work_after_forks(tmp_path: Path) -> None:
    """The parent keeps its own locks (only the child's copies are new)."""
    spool = Spool(tmp_path)
    lock = spool._lock
    for _ in range(3):
        assert _in_child(lambda: None, lock) == 0
    assert spool._lock is lock and not lock.locked()
    spool.write(Batch.of({"t": {"columns": ["a"], "rows": [[2]]}}))
