"""ClickHouse's HTTP interface on 127.0.0.1, in front of a chDB engine — enough of it for clickhouse-connect.

It takes the query from the ``query`` URL parameter or the body, binds
``param_*`` values server-side, applies URL settings, answers in the format the
query asks for, accepts ``INSERT ... FORMAT Native`` bodies (gzip/deflate/lz4/zstd
encoded or not), and reports errors the way ClickHouse does (HTTP 500, body
``Code: N. DB::Exception: ...``, ``X-ClickHouse-Exception-Code``). ``down()`` and
``up()`` stop and restart it on the same port, to play a server that goes away.
"""

from __future__ import annotations

import json
import socket  # noqa: F401
import os
import re
import tempfile
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import chdb

class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer is normal here, not an error to print."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)


_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"Code:\s*(\d+)")
_IGNORED_SETTINGS = {"query", "database", "query_id", "session_id", "client_protocol_version", "enable_http_compression",
                     "send_progress_in_http_headers", "http_headers_progress_interval_ms", "wait_end_of_query",
                     "cancel_http_readonly_queries_on_client_close", "default_format", "compress"}


def _decode(body: bytes, encoding: str | None) -> bytes:
    if not encoding:
        return body
    if encoding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    if encoding == "zstd":
        from clickhouse_connect.driver.compression import _zstd_decompress

        return _zstd_decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding}")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ClickHouseHTTP:
    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = chdb.connect(path)
        self.lock = threading.Lock()
        self.requests = 0
        self.fail_next = 0  # answer this many requests with a 503
        self._server: ThreadingHTTPServer | None = None
        self._open: set[Any] = set()
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def up(self) -> ClickHouseHTTP:
        fixture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                fixture._open.add(self.connection)

            def finish(self) -> None:
                fixture._open.discard(self.connection)
                super().finish()

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fixture._handle(self, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(length) if length else b""
                fixture._handle(self, body)

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening and drop every open connection, as a crashed server would."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for sock in list(self._open):
            try:
                sock.shutdown(2)
            except OSError:
                pass
        self._open.clear()

    def close(self) -> None:
        self.down()
        self.conn.close()

    @property
    def url(self) -> str:
        return f"http://default:@127.0.0.1:{self.port}/default"

    def query(self, sql: str, fmt: str = "CSV") -> str:
        with self.lock:
            return self.conn.query(sql, fmt).bytes().decode()

    # --- requests ---------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        self.requests += 1
        url = urlsplit(h.path)
        if url.path == "/ping":
            return self._reply(h, 200, b"Ok.\n")
        if self.fail_next > 0:
            self.fail_next -= 1
            return self._reply(h, 503, b"Code: 202. DB::Exception: Too many simultaneous queries. (TOO_MANY_SIMULTANEOUS_QUERIES)",
                               {"X-ClickHouse-Exception-Code": "202"})
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = _decode(body, h.headers.get("Content-Encoding"))
            params = {k[6:]: v for k, v in q.items() if k.startswith("param_")}
            settings = {k: v for k, v in q.items() if not k.startswith("param_") and k not in _IGNORED_SETTINGS}
            sql = q.get("query", "")
            data = b""
            if sql:
                data = body
            else:
                sql, _, data = body.partition(b"\n") if body.lstrip().upper().startswith(b"INSERT") else (body, b"", b"")
                sql = sql.decode("utf-8", "surrogateescape") if isinstance(sql, bytes) else sql
            m = _INSERT.match(sql)
            if m:
                out = self._insert(m.group(1), m.group(2), data, settings)
                return self._reply(h, 200, out, {"X-ClickHouse-Summary": json.dumps({"written_rows": "0"})})
            fmt = "TabSeparated"
            fm = _FORMAT.search(sql)
            if fm:
                fmt = fm.group(1)
                sql = sql[: fm.start()]
            if settings:
                sql = f"{sql} SETTINGS " + ", ".join(f"{k} = {_quote(v)}" for k, v in settings.items())
            with self.lock:
                result = self.conn.query(sql, fmt, params=params) if params else self.conn.query(sql, fmt)
            payload = result.bytes() if hasattr(result, "bytes") else bytes(result)
            return self._reply(h, 200, payload, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                                                 "X-ClickHouse-Summary": json.dumps({"read_rows": "0"})})
        except Exception as exc:
            text = str(exc)
            code = _CODE.search(text)
            return self._reply(h, 500, text.encode("utf-8", "replace"), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1000"})

    def _insert(self, target: str, fmt: str, data: bytes, settings: dict[str, str]) -> bytes:
        with tempfile.NamedTemporaryFile(suffix=".native", delete=False) as tmp:
            tmp.write(data)
        try:
            clause = (" SETTINGS " + ", ".join(f"{k} = {_quote(v)}" for k, v in settings.items())) if settings else ""
            with self.lock:
                self.conn.query(f"INSERT INTO {target} FROM INFILE {_quote(tmp.name)}{clause} FORMAT {fmt}")
        finally:
            os.unlink(tmp.name)
        return b""

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("X-ClickHouse-Query-Id", "fixture")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)
