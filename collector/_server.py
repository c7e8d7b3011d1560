"""``runmeter collector``: the receivers, the pipeline and the store, started and stopped together."""

from __future__ import annotations

import json
import ipaddress
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from runmeter.collector._auth import TokenAuth, server_ssl_context
from runmeter.collector._options import CollectorSettings
from runmeter.collector._service import Collector
from runmeter.exporter import Writer
from runmeter.processor import PriceBook, RunLimits

__all__ = ["CollectorServer", "JsonFormatter"]

_log = logging.getLogger(__name__)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _meter_provider() -> tuple[MeterProvider, Any]:
    """Self-metrics for Prometheus (``/metrics``) and, when ``OTEL_METRICS_EXPORTER`` says so, OTLP."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    if "otlp" in os.environ.get("OTEL_METRICS_EXPORTER", "").split(","):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "runmeter-collector")})
    return MeterProvider(metric_readers=readers, resource=resource), registry


def _loopback(endpoint: str) -> bool:
    host = endpoint.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


class CollectorServer:
    """Everything ``runmeter collector`` runs; ``ports`` are the bound gRPC, HTTP and admin ports."""

    def __init__(
        self,
        settings: CollectorSettings,
        writer: Writer,
        *,
        prices: PriceBook | None = None,
        run_limits: RunLimits | None = None,
    ) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from runmeter.collector._grpc import grpc_server
        from runmeter.collector._http import HttpServers

        auth = TokenAuth.from_file(settings.tokens_file) if settings.tokens_file else None
        open_to = [e for e in (settings.grpc_endpoint, settings.http_endpoint) if not _loopback(e)]
        if auth is None and open_to:
            if not settings.allow_unauthenticated:
                raise ValueError(
                    f"refusing to take OTLP on {', '.join(open_to)} without tokens: anyone who can reach it could write "
                    "into any project's bill. Give a tokens file (tokens_file, --tokens-file), listen on 127.0.0.1, or set "
                    "allow_unauthenticated = true (--allow-unauthenticated) for a private network or a Collector in front "
                    "that authenticates"
                )
            _log.warning("OTLP is open without tokens on %s (allow_unauthenticated): any client can write spans", ", ".join(open_to))
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise ValueError("TLS needs both tls_cert and tls_key")
        if settings.tls_client_ca and not settings.tls_cert:
            raise ValueError("tls_client_ca (mTLS) needs tls_cert and tls_key too")
        ssl_context = server_ssl_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca) if settings.tls_cert else None
        self.meter_provider, registry = _meter_provider()
        self.collector = Collector(
            settings, writer, prices=prices, run_limits=run_limits, meter_provider=self.meter_provider,
            track_ownership=auth is not None and auth.binds_projects,
        )
        try:
            self._grpc, grpc_port = grpc_server(self.collector, auth)
            self._http = HttpServers(
                self.collector, auth, ssl_context, lambda: (generate_latest(registry), CONTENT_TYPE_LATEST)
            )
        except BaseException:
            self.collector.shutdown(timeout_s=5)
            raise
        self.ports = {"grpc": grpc_port, "http": self._http.ports[0], "admin": self._http.ports[1]}
        self._stopped = threading.Event()
        _log.info("runmeter collector started", extra={"ports": self.ports, "store": writer.store.url.redacted(),
                                                        "wal_dir": str(Path(settings.wal_dir).resolve()), "auth": auth is not None})

    def stop(self, timeout_s: float | None = None) -> bool:
        """Graceful: refuse new requests (retryably), finish the acknowledged ones, write, close."""
        if self._stopped.is_set():
            return True
        timeout_s = self.collector.settings.drain_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        self.collector.draining = True
        self._http.stop(otlp_only=True)
        self._grpc.stop(grace=min(5.0, timeout_s / 4)).wait()
        ok = self.collector.shutdown(max(0.5, deadline - time.monotonic()))
        self._http.stop()
        self.meter_provider.shutdown()
        self._stopped.set()
        _log.info("runmeter collector stopped", extra={"drained": ok, "log_records_left": self.collector.wal.pending})
        return ok

    def serve_forever(self) -> bool:
        """Block until SIGTERM or SIGINT, then drain within ``drain_timeout_s``."""
        stop = threading.Event()

        def on_signal(signum: int, _: Any) -> None:
            _log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop.wait(1.0):
            pass
        return self.stop()
