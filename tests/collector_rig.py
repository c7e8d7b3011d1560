"""A runmeter collector on 127.0.0.1 (ports chosen by the OS) over a store in a temp dir, in this
process or as a ``runmeter collector`` subprocess; and requests shaped by the SDK's own OTLP encoder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

from runmeter.collector import CollectorServer, CollectorSettings
from runmeter.exporter import Writer, open_writer
from runmeter.processor import RunLimits

# gpt-4o-mini list prices (USD per million tokens), as published by OpenAI: the expected costs in
# these tests are worked out from them by hand, not by runmeter's PriceBook.
GPT_4O_MINI_IN, GPT_4O_MINI_OUT = 0.15, 0.60


def mini_cost(inp: int, out: int) -> float:
    return (inp * GPT_4O_MINI_IN + out * GPT_4O_MINI_OUT) / 1e6


def settings(tmp: Path, **kw: Any) -> CollectorSettings:
    base: dict[str, Any] = dict(grpc_endpoint="127.0.0.1:0", http_endpoint="127.0.0.1:0", admin_endpoint="127.0.0.1:0",
                                wal_dir=str(tmp / "wal"), log_format="text", drain_timeout_s=20)
    base.update(kw)
    return CollectorSettings(**base)


@dataclass
class Running:
    server: CollectorServer
    writer: Writer

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.server.ports['grpc']}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server.ports['http']}/v1/traces"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.server.ports['admin']}"

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Everything acknowledged, processed and written; then the query."""
        assert self.server.collector.flush(30), "the collector did not drain"
        return self.writer.query(sql)


@contextmanager
def running(
    tmp: Path, store_url: str | None = None, quiet_s: float = 0.2, rootless_quiet_s: float = 600.0, **kw: Any
) -> Iterator[Running]:
    writer = open_writer(store_url or f"chdb://{tmp / 'store'}", tmp / "spool")
    server = CollectorServer(settings(tmp, **kw), writer, run_limits=RunLimits(quiet_s=quiet_s, rootless_quiet_s=rootless_quiet_s))
    try:
        assert server.collector.replayed.wait(60), "not ready: the store did not open"  # as a readiness probe waits
        yield Running(server, writer)
    finally:
        server.stop(20)


def request_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def post(url: str, body: bytes, headers: dict[str, str] | None = None, context: Any = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf", **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


class Subprocess:
    """``runmeter collector`` as a child process, configured by a runmeter.toml in ``tmp``."""

    def __init__(self, tmp: Path, store_url: str, ports: dict[str, int], quiet_s: float = 0.3, workers: int | str = "auto") -> None:
        self.tmp = tmp
        self.ports = ports
        (tmp / "runmeter.toml").write_text(
            f'[storage]\nclickhouse_url = "{store_url}"\nspool_dir = "{tmp / "spool"}"\n'
            f'[runs]\nquiet_s = {quiet_s}\n'
            f'[collector]\ngrpc_endpoint = "127.0.0.1:{ports["grpc"]}"\nhttp_endpoint = "127.0.0.1:{ports["http"]}"\n'
            f'admin_endpoint = "127.0.0.1:{ports["admin"]}"\nwal_dir = "{tmp / "wal"}"\ndrain_timeout_s = 20\n'
            f'workers = {workers if isinstance(workers, int) else repr(workers)}\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Subprocess:
        env = {**os.environ, "RUNMETER_CONFIG": str(self.tmp / "runmeter.toml")}
        with open(self.tmp / "collector.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "runmeter.cli", "collector"], env=env, cwd=self.tmp, stdout=log, stderr=log)
        # A test that fails before it stops the collector must not leave it (and its workers) running.
        weakref.finalize(self, _kill, self.proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.tmp / "collector.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the collector did not become ready: " + (self.tmp / "collector.log").read_text()[-3000:])

    def worker_pids(self) -> list[int]:
        """The collector's worker processes (its children), by /proc."""
        assert self.proc is not None
        return children(self.proc.pid)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry.name))
    return sorted(out)


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
