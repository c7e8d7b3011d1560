"""Threads whose names the operating system sees too.

Python (before 3.14) names a thread for itself only: ``top -H``, ``ps -L``, ``perf`` and
``py-spy`` show every thread of the process under the program's name, so a collector's receiver,
log writer and insert threads cannot be told apart from outside (nor runmeter's threads from an
agent's own). :class:`Thread` gives each its name in the kernel too, at its start (Linux keeps 15
bytes of it: a longer ``runmeter-x`` name is shown as ``rm-x``, cut there).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from typing import Any

__all__ = ["Thread", "name_pool_thread", "name_this_thread", "native_name", "restore_thread_name"]

_PR_SET_NAME = 15  # prctl(2): the calling thread's name, 16 bytes with the NUL
_prctl: Any = None


def native_name(name: str) -> str:
    """The name as the kernel keeps it: at most 15 bytes, ``runmeter-`` shortened to ``rm-`` when it does not fit."""
    if len(name.encode()) > 15 and name.startswith("runmeter-"):
        name = "rm-" + name[len("runmeter-"):]
    return name.encode()[:15].decode(errors="ignore")


def name_this_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel (Linux; elsewhere nothing). Never raises."""
    global _prctl
    if _prctl is False or not sys.platform.startswith("linux"):
        return
    try:
        if _prctl is None:
            _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
        _prctl(_PR_SET_NAME, native_name(name).encode(), 0, 0, 0)
    except (OSError, AttributeError, ValueError, TypeError):
        _prctl = False  # no prctl here: not asked again


class Thread(threading.Thread):
    """A :class:`threading.Thread` that takes its name in the kernel too when it starts."""

    def run(self) -> None:
        name_this_thread(self.name)
        super().run()


def name_pool_thread() -> None:
    """A ``ThreadPoolExecutor``'s ``initializer``: each of its threads takes its name in the kernel too."""
    name_this_thread(threading.current_thread().name)


def restore_thread_name() -> None:
    """A :class:`Thread`'s name back in the kernel, after code that renamed it: chDB runs part of a
    query on the calling thread and names it for its own stages (ClickHouse's ``setThreadName``)."""
    t = threading.current_thread()
    if isinstance(t, Thread):
        name_this_thread(t.name)
