"""runmeter's own failures: logged once per place, counted, never raised into the user's program.

Under pytest (``PYTEST_CURRENT_TEST`` is set) they are re-raised instead, so a
bug cannot hide behind the safety net; a test of the safety net itself sets
``RUNMETER_SUPPRESS_INTERNAL_ERRORS=1``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter

__all__ = ["bad_value", "bad_value_counts", "internal_error", "internal_error_counts", "report_config_error", "warn_once"]

_log = logging.getLogger("runmeter")
_lock = threading.Lock()  # renewed in a forked child (_fork)
_counts: Counter[str] = Counter()
_bad: Counter[str] = Counter()


def internal_error(where: str, exc: BaseException) -> None:
    """Record a runmeter failure at ``where``: log the first one, count them all."""
    with _lock:
        _counts[where] += 1
        first = _counts[where] == 1
    if first:
        _log.warning("runmeter: internal error in %s (further ones counted, not logged): %r", where, exc, exc_info=exc)
    if os.environ.get("PYTEST_CURRENT_TEST") and not os.environ.get("RUNMETER_SUPPRESS_INTERNAL_ERRORS"):
        raise exc


def internal_error_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def bad_value(where: str, detail: str) -> None:
    """Input runmeter cannot use (a token count that is not a count, ...): log the first per place, count all.

    Not runmeter's failure, so never raised, under pytest or not."""
    with _lock:
        _bad[where] += 1
        first = _bad[where] == 1
    if first:
        _log.warning("runmeter: %s: %s (the call is kept, marked unpriced; further ones counted, not logged)", where, detail)


def bad_value_counts() -> dict[str, int]:
    with _lock:
        return dict(_bad)


_said: set[str] = set()


def warn_once(key: str, message: str, *args: object) -> bool:
    """Log ``message`` (a warning) the first time ``key`` is seen in this process; True if it was said."""
    with _lock:
        if key in _said:
            return False
        _said.add(key)
    _log.warning(message, *args)
    return True


def report_config_error(exc: BaseException) -> None:
    """Say once, in one line, that a broken config file turned runmeter off in this process.

    The agent itself runs on (untraced): the distro and each instrumentor meet the same error,
    and none of them raises it into ``opentelemetry-instrument``'s start-up."""
    text = str(exc)
    with _lock:
        first = ("config:" + text) not in _said
        _said.add("config:" + text)
    if first:
        _log.error("runmeter: %s. runmeter is off in this process until the file is fixed; the program runs untraced.", text)
