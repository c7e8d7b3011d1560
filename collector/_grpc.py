"""OTLP/gRPC on :4317: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

The method is served from the service descriptor in ``opentelemetry-proto``
with the request left as bytes, so a malformed message gets a clear
``INVALID_ARGUMENT`` (grpcio's own deserializer would answer ``INTERNAL``) and
the bytes go to the log as received. Backpressure: ``RESOURCE_EXHAUSTED`` with
``RetryInfo`` (log full) or ``UNAVAILABLE`` (draining) - both retried by OTLP
clients; ``UNAUTHENTICATED`` for a missing or unknown token.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTracePartialSuccess, ExportTraceServiceResponse

from runmeter.collector._auth import TokenAuth, Unauthenticated
from runmeter.collector._convert import MalformedRequest, read_request
from runmeter.collector._service import Collector, Refused
from runmeter.core import name_pool_thread

__all__ = ["grpc_server"]

_log = logging.getLogger(__name__)
_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]


def _retry_status(code: int, message: str, seconds: int) -> tuple[tuple[str, bytes], ...]:
    """The trailing ``grpc-status-details-bin`` that tells OTLP clients when to retry."""
    detail = AnyProto()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=seconds)))
    status = status_pb2.Status(code=code, message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


def grpc_server(collector: Collector, auth: TokenAuth | None) -> tuple[grpc.Server, int]:
    """A started server and its port (``grpc_endpoint`` may ask for port 0)."""
    s = collector.settings

    def export(data: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        project = None
        if auth is not None:
            header = next((v for k, v in context.invocation_metadata() if k == "authorization"), None)
            try:
                project = auth.authenticate(header if isinstance(header, str) else None).project
            except Unauthenticated as exc:
                collector.refuse("unauthenticated")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        req, dropped = None, 0
        checked = collector.check_wire(data, project)
        if checked is None:  # the check on the bytes could not decide: protobuf reads it
            try:
                req, dropped = read_request(data)
            except MalformedRequest as exc:
                collector.refuse("malformed")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            checked, fut = collector.accept(req, None if dropped else data, project, invalid_utf8=dropped, checked=checked)
            if fut is not None:
                fut.result()
        except Refused as exc:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.reason == "log_full" else grpc.StatusCode.UNAVAILABLE
            rpc_code = code_pb2.RESOURCE_EXHAUSTED if exc.reason == "log_full" else code_pb2.UNAVAILABLE
            context.set_trailing_metadata(_retry_status(rpc_code, str(exc), exc.retry_after_s or 1))
            context.abort(code, str(exc))
        except Exception as exc:  # the log could not be written: retryable, nothing acknowledged
            collector.refuse("log_error")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot log the request: {exc}")
        if checked.rejected:
            return ExportTraceServiceResponse(
                partial_success=ExportTracePartialSuccess(rejected_spans=checked.rejected, error_message=checked.error_message)
            )
        return ExportTraceServiceResponse()

    handler = grpc.method_handlers_generic_handler(
        _SERVICE.full_name,
        {"Export": grpc.unary_unary_rpc_method_handler(export, response_serializer=ExportTraceServiceResponse.SerializeToString)},
    )
    # grpcio reads a request's message on the thread that handles it: max_concurrent_requests threads
    # hold at most that many requests at once; a call that finds them all busy waits in the pool's
    # queue unread (a refusal would cost the client its retry delay, a second or more), and past
    # max_queued_requests waiting it is told RESOURCE_EXHAUSTED, which OTLP clients retry.
    server = grpc.server(
        ThreadPoolExecutor(max_workers=s.max_concurrent_requests, thread_name_prefix="runmeter-grpc", initializer=name_pool_thread),
        handlers=[handler],
        maximum_concurrent_rpcs=s.max_concurrent_requests + s.max_queued_requests,
        options=[
            ("grpc.max_receive_message_length", s.max_decompressed_bytes),
            ("grpc.so_reuseport", 0),
            # Idle and old connections are closed (a GOAWAY; clients reconnect), a client's keepalive
            # pings are bounded, and a connection that stops answering pings is dropped.
            ("grpc.max_connection_idle_ms", int(s.grpc_max_idle_s * 1000)),
            ("grpc.max_connection_age_ms", int(s.grpc_max_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(s.drain_timeout_s * 1000)),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.max_concurrent_streams", 100),
        ],
    )
    if s.tls_cert and s.tls_key:
        creds = grpc.ssl_server_credentials(
            [(Path(s.tls_key).read_bytes(), Path(s.tls_cert).read_bytes())],
            root_certificates=Path(s.tls_client_ca).read_bytes() if s.tls_client_ca else None,
            require_client_auth=bool(s.tls_client_ca),
        )
        port = server.add_secure_port(s.grpc_endpoint, creds)
    else:
        port = server.add_insecure_port(s.grpc_endpoint)
    if not port:
        raise OSError(f"cannot listen on {s.grpc_endpoint} for OTLP/gRPC")
    server.start()
    _log.info("OTLP/gRPC listening", extra={"endpoint": s.grpc_endpoint, "port": port, "tls": bool(s.tls_cert)})
    return server, port
