"""Transparent stream proxies that end the call span exactly once.

The span ends on the last chunk, on ``close()``, on the context manager's exit,
on an error mid-stream, or when the stream is dropped unread (garbage
collection). The proxy never reads ahead and never keeps the span current
between chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt

from runmeter.core import internal_error

__all__ = ["AsyncStream", "Finisher", "SyncStream"]


class Finisher:
    """The once-only end of a streamed call."""

    def __init__(self, on_chunk: Callable[[Any], None], on_end: Callable[[], None], on_error: Callable[[BaseException], None]) -> None:
        self._on_chunk = on_chunk
        self._on_end = on_end
        self._on_error = on_error
        self.done = False

    def chunk(self, item: Any) -> None:
        try:
            self._on_chunk(item)
        except Exception as exc:
            internal_error("stream.chunk", exc)

    def end(self) -> None:
        if not self.done:
            self.done = True
            self._on_end()

    def error(self, exc: BaseException) -> None:
        if not self.done:
            self.done = True
            self._on_error(exc)


class SyncStream(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, wrapped: Any, finisher: Finisher) -> None:
        super().__init__(wrapped)
        self._self_fin = finisher

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self.__wrapped__)
        except StopIteration:
            self._self_fin.end()
            raise
        except BaseException as exc:
            self._self_fin.error(exc)
            raise
        self._self_fin.chunk(item)
        return item

    def __enter__(self) -> SyncStream:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            return exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            if exc is not None:
                self._self_fin.error(exc)
            else:
                self._self_fin.end()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_fin.end()

    def __del__(self) -> None:
        fin = getattr(self, "_self_fin", None)
        if fin is not None and not fin.done:
            fin.end()


class AsyncStream(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, wrapped: Any, finisher: Finisher) -> None:
        super().__init__(wrapped)
        self._self_fin = finisher

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_fin.end()
            raise
        except BaseException as exc:
            self._self_fin.error(exc)
            raise
        self._self_fin.chunk(item)
        return item

    async def __aenter__(self) -> AsyncStream:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            return await exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            if exc is not None:
                self._self_fin.error(exc)
            else:
                self._self_fin.end()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_fin.end()

    def __del__(self) -> None:
        fin = getattr(self, "_self_fin", None)
        if fin is not None and not fin.done:
            fin.end()
