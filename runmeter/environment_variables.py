"""Every environment variable runmeter reads, in one place.

Standard ``OTEL_*`` variables keep their OpenTelemetry meaning and are read
first; ``RUNMETER_*`` variables cover the rest. A bad value in the environment
logs a warning and falls back to the default; a bad argument raises
``ValueError``.
"""

from __future__ import annotations

RUNMETER_CONFIG = "RUNMETER_CONFIG"
"""Path of the config file. Default: ``./runmeter.toml``, else ``[tool.runmeter]`` in ``./pyproject.toml``."""

RUNMETER_CLICKHOUSE_URL = "RUNMETER_CLICKHOUSE_URL"
"""Where runs are stored: ``chdb:///path`` (embedded, default ``chdb://.runmeter``) or ``http(s)://user:pass@host:8123/db``."""

RUNMETER_SPOOL_DIR = "RUNMETER_SPOOL_DIR"
"""Directory of the on-disk spool of batches waiting to be written. Default: ``<store>/spool`` or ``.runmeter-spool``."""

RUNMETER_SPOOL_MAX_BYTES = "RUNMETER_SPOOL_MAX_BYTES"
"""Largest size of the spool in bytes. Default: 1 GiB."""

RUNMETER_RUN_HANDOVER = "RUNMETER_RUN_HANDOVER"
"""Set by runmeter, not by you: in the environment of a program started inside a run, the run (JSON) whose
calls it makes; read once at its start, beside the OpenTelemetry carriers ``TRACEPARENT``/``TRACESTATE``."""

RUNMETER_RUN_GRACE_S = "RUNMETER_RUN_GRACE_S"
"""In-process: seconds after a run's root span ends during which late children still join the run. Default 2."""

RUNMETER_RUN_QUIET_S = "RUNMETER_RUN_QUIET_S"
"""Remote spans (collector): a run completes when its root has arrived and the trace was quiet this long. Default 30."""

RUNMETER_RUN_ROOTLESS_QUIET_S = "RUNMETER_RUN_ROOTLESS_QUIET_S"
"""Remote spans whose root never arrives: the trace completes, flagged incomplete, after this much quiet. Default 600."""

RUNMETER_MAX_OPEN_RUNS = "RUNMETER_MAX_OPEN_RUNS"
"""Most runs held open at once; the oldest is emitted ``incomplete`` beyond it. Default 10000."""

RUNMETER_MAX_SPANS_PER_RUN = "RUNMETER_MAX_SPANS_PER_RUN"
"""Most spans kept in one open run; beyond it the run is emitted ``incomplete``. Default 20000."""

RUNMETER_MAX_RUN_AGE_S = "RUNMETER_MAX_RUN_AGE_S"
"""Oldest a run may get before it is emitted ``incomplete``. Default 86400 (a day)."""

RUNMETER_LOOP_THRESHOLD = "RUNMETER_LOOP_THRESHOLD"
"""How many identical repeats (tool call, context read, LLM input) make a loop signal. Default 3."""

RUNMETER_ABANDONED_AFTER_S = "RUNMETER_ABANDONED_AFTER_S"
"""A run with no outcome this long after it ended counts as abandoned in reports. Default 86400."""

RUNMETER_TRACE_URL = "RUNMETER_TRACE_URL"
"""``[ui] trace_url``: a link from a run to its trace, with ``{trace_id}``, e.g. ``http://localhost:16686/trace/{trace_id}``."""

OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""``NO_CONTENT`` (default), ``SPAN_ONLY``, ``EVENT_ONLY`` or ``SPAN_AND_EVENT``, as in the official instrumentations."""

OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT = "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"
"""Unset or ``true``: content events follow the capture mode (``EVENT_ONLY``, ``SPAN_AND_EVENT``);
``false`` turns them off (``SPAN_AND_EVENT`` then keeps its span part). Another value warns."""

RUNMETER_ATTRIBUTE_INDEXES_ON_INSERT = "RUNMETER_ATTRIBUTE_INDEXES_ON_INSERT"
"""``1`` builds ``otel_traces``' bloom-filter indexes over attribute keys and values at every insert; by
default they are left to ClickHouse's merges, on a server that allows it (docs/storage.md)."""

RUNMETER_SDK_FAST_PATHS = "RUNMETER_SDK_FAST_PATHS"
"""``0`` makes runmeter use only the OpenTelemetry SDK's public API per span, never the fast paths
that read its internals (``runmeter/processor/_sdk.py``; on by default for the SDK versions they
were tested with, off for any other)."""
