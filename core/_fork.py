"""Locks a forked child gets back unlocked.

``os.fork`` copies a lock in the state it is in, but not the thread holding it: a lock that one of
the parent's threads (runmeter's writer, the batch span processor's, the application's own) held
at that moment stays held forever in the child, and the child's first span export, price lookup
or run update waits on it for good. The objects whose locks those threads take say so here, and
the child gets new locks, as the standard library's logging does for its own.
"""

from __future__ import annotations

import os
import threading
import weakref

from runmeter.core import _selfcheck

__all__ = ["renew_locks_after_fork"]

_owners: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def renew_locks_after_fork(owner: object, *names: str) -> None:
    """Give ``owner`` new ``threading.Lock`` objects for the attributes ``names`` in a forked child."""
    with _registry_lock:
        _owners[owner] = names


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # this one too: a parent thread may have been registering
    _selfcheck._lock = threading.Lock()  # runmeter's failure counter, taken by any thread
    for owner, names in list(_owners.items()):
        for name in names:
            try:
                setattr(owner, name, threading.Lock())
            except Exception:  # noqa: BLE001 - one odd owner must not leave the others' locks held
                pass


os.register_at_fork(after_in_child=_after_fork_in_child)
