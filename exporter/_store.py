"""One client for both backends, through ``clickhouse-connect``.

* ``chdb:///abs/path`` or ``chdb://relative/path`` — embedded chDB (the ``embedded``
  extra). Only one process at a time can open a chDB directory, so a session
  holds an exclusive ``flock`` on ``<path>.lock`` and closes the engine when it
  ends; other processes wait for it (agents write to the spool meanwhile). A
  session that has to wait says so with a file in ``<path>.waiting/`` (named by
  its process id), so a busy holder - a collector inserting all the time - gives
  the store up after its current insert instead of on a timer. The holder writes
  who it is into the lock file, so a waiter can say whom it waits for.
* ``http(s)://user:password@host:8123/database`` — a ClickHouse server.

Migrations run on the first session of each process.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import wrapt
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

from runmeter.exporter._migrations import SchemaOptions, apply_migrations

__all__ = ["Store", "StoreError", "StoreURL"]

# One chDB path open per process at a time. A plain Lock, not an RLock: a writer may open a
# session on its background thread and close it from the thread that shuts it down.
_chdb_process_lock = threading.Lock()


@contextmanager
def untraced() -> Iterator[None]:
    """runmeter's own storage work is never traced: with an HTTP client instrumentation loaded
    (urllib3, requests), each ClickHouse insert would otherwise become a span in the store it writes."""
    with suppress_instrumentation(), suppress_http_instrumentation():
        yield


def _untraced_call(name: str) -> Any:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with untraced():
            return getattr(self.__wrapped__, name)(*args, **kwargs)

    call.__name__ = name
    return call


class _UntracedClient(wrapt.ObjectProxy):  # type: ignore[misc]
    """A clickhouse-connect client whose calls run :func:`untraced`, from whichever thread makes them."""

    insert = _untraced_call("insert")
    raw_insert = _untraced_call("raw_insert")
    query = _untraced_call("query")
    raw_query = _untraced_call("raw_query")
    command = _untraced_call("command")
    close = _untraced_call("close")


class StoreError(RuntimeError):
    """The store cannot be reached or used; the message says why and what to do."""


@dataclass(frozen=True)
class StoreURL:
    kind: str  # "chdb" | "http"
    path: Path | None = None
    host: str = ""
    port: int = 8123
    username: str = "default"
    password: str = ""
    database: str = "default"
    secure: bool = False

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        parts = urlsplit(url)
        if parts.scheme == "chdb":
            raw = (parts.netloc + parts.path) if parts.netloc else parts.path
            if not raw:
                raise StoreError(f"{url!r}: a chdb URL needs a directory, e.g. chdb://.runmeter or chdb:///var/lib/runmeter")
            return cls("chdb", path=Path(raw).expanduser().resolve())
        if parts.scheme in ("http", "https"):
            if not parts.hostname:
                raise StoreError(f"{url!r}: no host")
            return cls(
                "http",
                host=parts.hostname,
                port=parts.port or (8443 if parts.scheme == "https" else 8123),
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                database=parts.path.strip("/") or "default",
                secure=parts.scheme == "https",
            )
        raise StoreError(f"{url!r}: use chdb:///path (embedded) or http(s)://user:pass@host:8123/db")

    def with_credentials(self) -> str:
        """The URL again, password included: for another process of runmeter's that connects
        too (handed over a pipe, never logged or put on a command line)."""
        if self.kind == "chdb":
            return f"chdb://{self.path}"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{quote(self.username, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/{self.database}"

    def redacted(self) -> str:
        if self.kind == "chdb":
            return f"chdb://{self.path}"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


def _import_chdb_now() -> None:
    """Import chDB on the thread setting the store up (an agent's main thread, before its own code
    runs), not on the first export's background thread: chDB's import changes the process's working
    directory to its package for the ~0.6 s it takes, and a relative path the agent opened meanwhile
    on another thread (a file it reads, a program it starts) would be looked up there. Seen as
    ``can't open file .../site-packages/chdb/child.py`` in ``test_storage_processes.py``."""
    if "chdb" in sys.modules:
        return
    try:
        import chdb  # noqa: F401
    except ImportError:  # said when a session is asked for (StoreError, with what to install)
        pass


class Store:
    """A ClickHouse store; ``with store.session() as client:`` gives a clickhouse-connect client."""

    def __init__(self, url: str, schema: SchemaOptions | None = None, lock_timeout_s: float = 60.0) -> None:
        self.url = StoreURL.parse(url)
        self.schema = schema or SchemaOptions()
        self.lock_timeout_s = lock_timeout_s
        # Called once when a session starts to wait for another process, with who holds the store
        # ("pid 1234 (runmeter collector)"): a command line says so instead of hanging silently.
        self.on_wait: Callable[[str], None] | None = None
        self._migrated = False
        self._http_client: Any = None
        self._lock = threading.Lock()
        if self.url.kind == "chdb":
            _import_chdb_now()

    @property
    def embedded(self) -> bool:
        return self.url.kind == "chdb"

    def _connect(self) -> Any:
        with untraced():
            return _UntracedClient(self._open_client())

    def _open_client(self) -> Any:
        import clickhouse_connect

        u = self.url
        if u.kind == "chdb":
            try:
                import chdb  # noqa: F401
            except ImportError as exc:
                raise StoreError(
                    "the embedded store needs chDB: pip install 'runmeter[embedded]', "
                    "or set RUNMETER_CLICKHOUSE_URL=http://user:pass@host:8123/db"
                ) from exc
            u.path.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            return clickhouse_connect.get_client(dsn=f"chdb://{u.path}")
        try:
            return clickhouse_connect.get_client(
                host=u.host, port=u.port, username=u.username, password=u.password,
                database=u.database, secure=u.secure, connect_timeout=5, send_receive_timeout=60,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {u.redacted()}: {exc}") from exc

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's HTTP client (its sockets are the parent's) without closing it."""
        self._lock = threading.Lock()
        self._http_client = None

    def beside(self, client: Any) -> Any:
        """A client for reads beside ``client``'s session, which runs them while the session inserts:
        for an embedded store another chDB connection of this process (valid only while the session
        that holds the store is open: close it first), for a server the session's own client."""
        if not self.embedded:
            return client
        return self._connect()

    @contextmanager
    def session(self, *, wait: bool = True) -> Iterator[Any]:
        """A client for one unit of work. Raises StoreError; with ``wait=False``, TimeoutError if busy."""
        if not self.embedded:
            with self._lock:
                if self._http_client is None:
                    self._http_client = self._connect()
                client = self._http_client
            self._migrate(client)
            yield client
            return
        assert self.url.path is not None
        lock_path = self.url.path.with_name(self.url.path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        if not _chdb_process_lock.acquire(blocking=False):
            if not wait:
                raise TimeoutError(f"the embedded store {self.url.path} is in use in this process")
            with self._waiting():
                if not _chdb_process_lock.acquire(timeout=self.lock_timeout_s):
                    raise TimeoutError(f"the embedded store {self.url.path} is in use in this process")
        try:
            with open(lock_path, "a+") as lock_file:
                self._flock(lock_file, wait)
                _say_holder(lock_file)
                try:
                    client = self._connect()
                    try:
                        self._migrate(client)
                        yield client
                    finally:
                        client.close()
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
        finally:
            _chdb_process_lock.release()

    @property
    def _waiting_dir(self) -> Path:
        assert self.url.path is not None
        return self.url.path.with_name(self.url.path.name + ".waiting")

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Say, for as long as this lasts, that a session waits for the embedded store."""
        marker = self._waiting_dir / f"{os.getpid()}-{threading.get_ident()}"
        for _ in range(3):  # another waiter may remove the (empty) directory in between
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                break
            except FileNotFoundError:
                continue
            except OSError:
                break  # a read-only directory: the holder still gives the store up on its timer
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)
            try:
                marker.parent.rmdir()  # only when no one else waits
            except OSError:
                pass

    def contended(self) -> bool:
        """Whether a session (of any process) waits for this embedded store. Markers of processes
        that died while waiting are removed."""
        if not self.embedded:
            return False
        try:
            names = os.listdir(self._waiting_dir)
        except OSError:
            return False
        for name in names:
            pid = name.partition("-")[0]
            if pid.isdigit() and _alive(int(pid)):
                return True
            (self._waiting_dir / name).unlink(missing_ok=True)
        return False

    def _flock(self, f: Any, wait: bool) -> None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not wait:
                raise TimeoutError(f"the embedded store {self.url.path} is in use by {holder(f)}") from None
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        if self.on_wait is not None:
            try:
                self.on_wait(holder(f))
            except Exception:  # noqa: BLE001 - a caller's message never stops the wait
                pass
        with self._waiting():
            while True:
                time.sleep(delay)
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"the embedded store {self.url.path} is still held by {holder(f)} "
                                           f"after {self.lock_timeout_s:g} s") from None
                    delay = min(delay * 2, 0.05)

    def _migrate(self, client: Any) -> None:
        if not self._migrated:
            apply_migrations(client, replace(self.schema, embedded=self.embedded))
            self._migrated = True

    def close(self) -> None:
        with self._lock:
            if self._http_client is not None:
                self._http_client.close()
                self._http_client = None


def process_label(argv: list[str] | None = None) -> str:
    """This process in a few words: "runmeter collector", "python agent.py"."""
    argv = sys.argv if argv is None else argv
    if not argv or not argv[0]:
        return "python"
    first = Path(argv[0])
    if first.name == "runmeter" or first.parts[-2:] == ("runmeter", "cli.py"):
        return " ".join(["runmeter", *argv[1:2]])
    return f"python {first.name}"


def _say_holder(lock_file: Any) -> None:
    """Write who holds the store into its (locked) lock file."""
    try:
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()} {process_label()}\n")
        lock_file.flush()
    except OSError:
        pass  # a read-only directory: waiters say "another process"


def holder(lock_file: Any) -> str:
    """Who holds the store, as its lock file says: "pid 1234 (runmeter collector)"."""
    try:
        lock_file.seek(0)
        pid, _, label = lock_file.read(300).strip().partition(" ")
    except OSError:
        return "another process"
    if not pid.isdigit():
        return "another process"
    return f"pid {pid} ({label})" if label else f"pid {pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
