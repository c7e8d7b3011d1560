"""One bounded cache keyed by an object's identity, for the few hot spots that read the same object
again and again (a resource's service name, a resource's stringified attributes, a model's
compiled price). The object is kept with its entry, so its id cannot be reused while cached."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["IdentityCache"]

V = TypeVar("V")


class IdentityCache(Generic[V]):
    """``get``/``put`` by ``id(obj)``; cleared when full (bounded whatever objects arrive).

    Thread-safe for single operations under the GIL (a dict read or write each); a race at worst
    computes a value twice."""

    def __init__(self, maxsize: int = 1024) -> None:
        self._maxsize = maxsize
        self._entries: dict[int, tuple[Any, V]] = {}

    def get(self, obj: Any) -> V | None:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        return None

    def put(self, obj: Any, value: V) -> V:
        if len(self._entries) >= self._maxsize:
            self._entries.clear()
        self._entries[id(obj)] = (obj, value)
        return value
