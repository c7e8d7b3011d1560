"""The OpenTelemetry distro and configurator: ``opentelemetry-instrument python agent.py`` just works.

With runmeter installed, ``opentelemetry-instrument`` loads :class:`RunmeterDistro`
and :class:`RunmeterConfigurator` (entry points ``opentelemetry_distro`` and
``opentelemetry_configurator``, both named ``runmeter``). The configurator sets
up the SDK exactly as the standard one does — every ``OTEL_*`` variable keeps
its meaning (exporters, resource attributes, service name, sampler) — and puts
one :class:`~runmeter.processor.RunProcessor` in front of every exporter, so
spans are priced and assembled into runs whatever the backend:

* ``OTEL_TRACES_EXPORTER`` unset: ``clickhouse`` (the embedded store, ``.runmeter/``);
* ``otlp``: Jaeger, Tempo or a Collector, priced spans and run attributes included;
* ``otlp,clickhouse``: both.

Run records go to the ClickHouse store when ``clickhouse`` is among the
exporters. The distro defaults metrics and logs exporters to ``none`` (set
``OTEL_METRICS_EXPORTER=otlp`` to send runmeter's metrics).

With ``opentelemetry-distro`` installed too, the two distros compete and the
first one found wins; set ``OTEL_PYTHON_DISTRO=runmeter`` and
``OTEL_PYTHON_CONFIGURATOR=runmeter`` to choose runmeter's (it sets the latter
itself when it is the one loaded). With the plain SDK configurator, runmeter's
instrumentation still prices its own spans, but no runs are assembled or stored.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.environment_variables import OTEL_LOGS_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from runmeter.config import ConfigError, load_settings, report_config_error
from runmeter.processor import PriceBook, RunLimits, RunProcessor

__all__ = ["RunmeterConfigurator", "RunmeterDistro"]

_log = logging.getLogger(__name__)
_NAME = "runmeter"
DEFAULT_TRACES_EXPORTER = "clickhouse"


class RunmeterDistro(BaseDistro):  # type: ignore[misc]
    """Sets runmeter's defaults; every OTEL_* variable the user set wins."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault(OTEL_TRACES_EXPORTER, DEFAULT_TRACES_EXPORTER)
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "none")
        os.environ.setdefault(OTEL_LOGS_EXPORTER, "none")
        os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, _NAME)


class _NoOp(SpanProcessor):
    """What the SDK adds for the second and later exporters: they hang off the one RunProcessor."""


class RunmeterConfigurator(_OTelSDKConfigurator):  # type: ignore[misc]
    """The SDK's own configuration, with one RunProcessor in front of all exporters."""

    processor: RunProcessor | None = None

    def _configure(self, **kwargs: Any) -> None:
        try:
            settings = load_settings()
        except ConfigError as exc:  # one clear line, not two tracebacks; the agent runs on, untraced
            report_config_error(exc)
            return
        sink = None
        processor: RunProcessor | None = None
        store_writer: Any = None

        def export_processor(exporter: SpanExporter) -> SpanProcessor:
            nonlocal processor, sink, store_writer
            batch = BatchSpanProcessor(exporter)
            if store_writer is None:
                store_writer = getattr(exporter, "writer", None)
            run_sink = getattr(exporter, "run_sink", None)
            if sink is None and run_sink is not None:
                sink = run_sink
            if processor is None:
                processor = RunProcessor(batch, sink=sink, prices=PriceBook(settings.pricing), limits=RunLimits.from_settings(settings.runs))
                return processor
            processor.add_downstream(batch)
            if processor.sink is None and sink is not None:
                processor.sink = sink
            return _NoOp()

        kwargs.setdefault("export_span_processor", export_processor)
        super()._configure(**kwargs)
        if processor is None:
            # No exporter at all (OTEL_TRACES_EXPORTER=none): still price spans and keep budgets.
            from opentelemetry import trace

            processor = RunProcessor(prices=PriceBook(settings.pricing), limits=RunLimits.from_settings(settings.runs))
            provider = trace.get_tracer_provider()
            add = getattr(provider, "add_span_processor", None)
            if add is not None:
                add(processor)
        RunmeterConfigurator.processor = processor
        if settings.alerts.rules and settings.alerts.to:
            from runmeter import alerts

            on_sent = alerts.recorder(store_writer) if store_writer is not None else None
            live = alerts.install(settings.alerts, processor.sink, on_sent)
            if live is not None:
                processor.sink = live
        if settings.limits.spend:
            from runmeter.limits import install

            install(settings, store_writer)

