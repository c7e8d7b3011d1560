"""OTLP/HTTP on :4318 (``POST /v1/traces``) and the admin port (``/healthz``, ``/readyz``, ``/metrics``).

Per the OTLP/HTTP specification: protobuf (``application/x-protobuf``) or JSON
(``application/json``) bodies, ``Content-Encoding: gzip``, chunked bodies
without ``Content-Length`` (the JS SDK sends them); the answer is in the
request's encoding. 200 with ``partial_success`` when some spans were
rejected; 400 with a ``google.rpc.Status`` for a malformed request; 401 without
a valid token; 413 past the size limits (checked while reading and while
inflating, so a gzip bomb stops at the limit); 429/503 with ``Retry-After``
when the collector must refuse for now.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import zlib
from collections.abc import Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTracePartialSuccess, ExportTraceServiceResponse

from runmeter.collector._auth import TokenAuth, Unauthenticated
from runmeter.collector._convert import MalformedRequest, parse_json_request, read_request
from runmeter.collector._service import Collector, Refused
from runmeter.core import Thread

__all__ = ["HttpServers"]

_log = logging.getLogger(__name__)
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"


class _TooLarge(Exception):
    pass


def _gunzip(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedRequest(f"the gzip body cannot be read: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise _TooLarge(f"the request inflates past {limit} bytes")
    if not d.eof:  # cut short: the gzip trailer (its CRC and length) never came; nothing partial is taken
        raise MalformedRequest("the gzip body is cut short (no end of stream, so its CRC cannot be checked)")
    return out


def _answer(message: Any, ctype: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json_format.MessageToJson(message).encode() if ctype == _JSON else message.SerializeToString()
    return web.Response(body=body, status=status, content_type=ctype, headers=headers)


def _error(status: int, message: str, ctype: str, headers: dict[str, str] | None = None) -> web.Response:
    return _answer(status_pb2.Status(code=status, message=message), ctype, status, headers)


def _traces_handler(collector: Collector, auth: TokenAuth | None) -> Callable[[web.Request], Any]:
    s = collector.settings
    intake: asyncio.Semaphore | None = None  # made on the server's loop, at the first request

    async def traces(request: web.Request) -> web.Response:
        nonlocal intake
        if intake is None:
            intake = asyncio.Semaphore(s.max_concurrent_requests)
        async with intake:  # at most max_concurrent_requests bodies read and parsed at once
            return await _traces(request)

    async def _traces(request: web.Request) -> web.Response:
        ctype = request.content_type
        answer_type = _JSON if ctype == _JSON else _PROTOBUF
        if ctype not in (_PROTOBUF, _JSON):
            collector.refuse("unsupported_media_type")
            return _error(415, f"Content-Type must be {_PROTOBUF} or {_JSON}, not {ctype!r}", _PROTOBUF)
        project = None
        if auth is not None:
            try:
                project = auth.authenticate(request.headers.get("Authorization")).project
            except Unauthenticated as exc:
                collector.refuse("unauthenticated")
                return _error(401, str(exc), answer_type, {"WWW-Authenticate": "Bearer"})
        try:
            try:  # aiohttp stops at client_max_size (413); a body that trickles in is cut off
                data = await asyncio.wait_for(request.read(), s.http_body_timeout_s)
            except asyncio.TimeoutError:
                collector.refuse("body_timeout")
                return _error(408, f"the body did not arrive within {s.http_body_timeout_s} s", answer_type, {"Connection": "close"})
            except ConnectionError:  # the client went away mid-body: nothing to answer, nothing to log but a line
                collector.refuse("client_disconnected")
                _log.info("a client disconnected before its request body was complete; nothing was taken")
                return web.Response(status=400)
            encoding = request.headers.get("Content-Encoding", "identity").lower()
            if encoding == "gzip":
                data = _gunzip(data, s.max_decompressed_bytes)
            elif encoding != "identity":
                collector.refuse("unsupported_encoding")
                return _error(415, f"Content-Encoding {encoding!r} is not supported (gzip or none)", answer_type)
            req, dropped, checked = None, 0, None
            if ctype == _PROTOBUF:
                checked = collector.check_wire(data, project)
            if checked is None:  # JSON, or the check on the bytes could not decide: protobuf reads it
                req, dropped = (parse_json_request(data), 0) if ctype == _JSON else read_request(data)
        except web.HTTPRequestEntityTooLarge:
            collector.refuse("too_large")
            return _error(413, f"the request is larger than {s.max_request_bytes} bytes", answer_type)
        except _TooLarge as exc:
            collector.refuse("too_large")
            return _error(413, str(exc), answer_type)
        except MalformedRequest as exc:
            collector.refuse("malformed")
            return _error(400, str(exc), answer_type)
        try:
            logged = data if ctype == _PROTOBUF and not dropped else None
            if collector.track_ownership:  # may ask the store who owns a trace: not on the event loop
                checked, fut = await asyncio.to_thread(collector.accept, req, logged, project, dropped, checked)
            else:
                checked, fut = collector.accept(req, logged, project, invalid_utf8=dropped, checked=checked)
            if fut is not None:
                await asyncio.wrap_future(fut)
        except Refused as exc:
            status = 429 if exc.reason == "log_full" else 503
            return _error(status, str(exc), answer_type, {"Retry-After": str(exc.retry_after_s or 1)})
        except Exception as exc:  # the log could not be written: retryable, nothing acknowledged
            collector.refuse("log_error")
            return _error(503, f"cannot log the request: {exc}", answer_type, {"Retry-After": str(s.retry_after_s)})
        response = ExportTraceServiceResponse()
        if checked.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=checked.rejected, error_message=checked.error_message)
            )
        return _answer(response, answer_type)

    return traces


def _admin_app(collector: Collector, metrics_text: Callable[[], tuple[bytes, str]] | None) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ok = collector.healthy
        return web.json_response({"status": "ok" if ok else "failing"}, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        ok = collector.ready
        body = {
            "ready": ok,
            "replayed": collector.replayed.is_set(),
            "draining": collector.draining,
            "log_bytes": collector.wal.size,
            "log_max_bytes": collector.settings.wal_max_bytes,
        }
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        if metrics_text is None:
            return web.Response(status=404, text="metrics are not enabled")
        body, ctype = metrics_text()
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)])
    return app


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Refuse(asyncio.Protocol):
    """A connection past the cap: told to come back later, and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


class _Capped:
    """aiohttp's protocol factory, with a cap on open connections (each holds a socket and a buffer)."""

    def __init__(self, server: Any, cap: int, refused: Callable[[], None]) -> None:
        self._server = server
        self._cap = cap
        self._refused = refused

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) >= self._cap:
            self._refused()
            return _Refuse()
        return self._server()  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class HttpServers:
    """The OTLP/HTTP and admin servers on one asyncio loop in a thread of their own."""

    def __init__(
        self,
        collector: Collector,
        auth: TokenAuth | None,
        ssl_context: ssl.SSLContext | None,
        metrics_text: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self.collector = collector
        s = collector.settings
        otlp = web.Application(client_max_size=s.max_request_bytes)
        otlp.add_routes([web.post("/v1/traces", _traces_handler(collector, auth))])
        self._apps = [
            (otlp, s.http_endpoint, ssl_context),
            (_admin_app(collector, metrics_text), s.admin_endpoint, None),
        ]
        self._loop = asyncio.new_event_loop()
        self._runners: list[web.AppRunner] = []
        self.ports: list[int] = []
        started = threading.Event()
        self._error: BaseException | None = None
        self._thread = Thread(target=self._run, args=(started,), name="runmeter-http", daemon=True)
        self._thread.start()
        started.wait()
        if self._error is not None:
            raise self._error

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self._loop.close()
            started.set()
            return
        started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _start(self) -> None:
        s = self.collector.settings
        for app, endpoint, ctx in self._apps:
            # Bodies are inflated here, with a limit, not by aiohttp. keepalive_timeout also closes a
            # connection that has not sent a whole request head in that time (aiohttp >= 3.10 arms it
            # at connect): a client that opens a connection and stalls does not hold it.
            runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False,
                                   keepalive_timeout=s.http_idle_timeout_s)
            await runner.setup()
            # aiohttp has no public hook for a connection cap: its protocol factory is wrapped in place.
            runner._server = _Capped(  # type: ignore[assignment]
                runner.server, s.http_max_connections, lambda: self.collector.refuse("too_many_connections"))
            host, port = _split(endpoint)
            site = web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
            await site.start()
            self._runners.append(runner)
            server = getattr(site, "_server", None)
            self.ports.append(server.sockets[0].getsockname()[1] if server is not None and server.sockets else port)
        _log.info("OTLP/HTTP listening", extra={"endpoint": self._apps[0][1], "port": self.ports[0], "tls": self._apps[0][2] is not None})

    def stop(self, otlp_only: bool = False) -> None:
        """Stop the OTLP port (``otlp_only``: keep the admin port for probes while draining)."""
        if not self._thread.is_alive():
            return
        runners = self._runners[:1] if otlp_only else self._runners
        self._runners = self._runners[1:] if otlp_only else []
        fut = asyncio.run_coroutine_threadsafe(self._cleanup(runners), self._loop)
        fut.result(timeout=15)
        if not otlp_only:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    async def _cleanup(self, runners: list[web.AppRunner]) -> None:
        for r in runners:
            await r.cleanup()
