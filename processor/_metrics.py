"""The processor's metrics: run cost, outcomes, loop signals, budget breaches, limits."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation, get_meter

from runmeter.conventions import attributes as A
from runmeter.conventions import genai as G
from runmeter.processor._records import RunRecord

__all__ = ["RUN_LABELS", "ProcessorMetrics"]

_OUTCOME_UNKNOWN = "unknown"
# The run metrics' optional labels, by the name settings use.
RUN_LABELS = {"owner": A.RUNMETER_RUN_OWNER, "project": A.RUNMETER_RUN_PROJECT, "name": A.RUNMETER_RUN_NAME}
# Bucket bounds a run's cost and duration are told apart by (each at most ~2.5x the one before).
# The SDK's default bounds (0, 5, 10, 25 ... 10,000) are for milliseconds: every run under five
# dollars would share one bucket, and a p95 of run cost from them says nothing.
COST_BUCKETS_USD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)
DURATION_BUCKETS_S = (0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600, 1200, 2400, 3600, 7200, 14400, 28800, 43200, 86400)


class ProcessorMetrics:
    def __init__(
        self,
        meter_provider: MeterProvider | None,
        open_runs: Callable[[], int],
        oldest_open_age_s: Callable[[], float],
        run_labels: Collection[str] = RUN_LABELS,
    ) -> None:
        """``run_labels``: which of owner, project and name label the run metrics. Each distinct value
        is a series of its own: a collector shared by many teams keeps them off (or owner and project
        only), so a scrape stays small whatever the clients send."""
        unknown = set(run_labels) - set(RUN_LABELS)
        if unknown:
            raise ValueError(f"run metric labels must be among {sorted(RUN_LABELS)}, not {sorted(unknown)}")
        self._labels = {RUN_LABELS[k] for k in run_labels}
        meter = get_meter(__name__, meter_provider=meter_provider)
        self.run_cost = meter.create_histogram(
            A.RUNMETER_RUN_COST_METRIC, unit=A.RUNMETER_RUN_COST_UNIT, description="Cost of finished runs",
            explicit_bucket_boundaries_advisory=COST_BUCKETS_USD,
        )
        self.run_duration = meter.create_histogram(
            A.RUNMETER_RUN_DURATION_METRIC, unit=A.RUNMETER_RUN_DURATION_UNIT, description="Wall-clock duration of finished runs",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.runs = meter.create_counter(A.RUNMETER_RUNS_METRIC, unit=A.RUNMETER_RUNS_UNIT, description="Finished runs by outcome")
        self.loop_signals = meter.create_counter(
            A.RUNMETER_LOOP_SIGNALS_METRIC, unit=A.RUNMETER_LOOP_SIGNALS_UNIT, description="Loop signals by kind"
        )
        self.budget_breaches = meter.create_counter(
            A.RUNMETER_BUDGET_BREACHES_METRIC, unit=A.RUNMETER_BUDGET_BREACHES_UNIT, description="Budget breaches by limit and action"
        )
        self.runs_incomplete = meter.create_counter(
            A.RUNMETER_RUNS_INCOMPLETE_METRIC, unit=A.RUNMETER_RUNS_INCOMPLETE_UNIT, description="Runs cut by a limit"
        )
        self.spans_dropped = meter.create_counter(
            A.RUNMETER_SPANS_DROPPED_METRIC, unit=A.RUNMETER_SPANS_DROPPED_UNIT, description="Spans runmeter could not process"
        )

        def _open(options: CallbackOptions) -> Iterable[Observation]:
            yield Observation(open_runs())

        def _oldest(options: CallbackOptions) -> Iterable[Observation]:
            yield Observation(oldest_open_age_s())

        meter.create_observable_up_down_counter(
            A.RUNMETER_RUNS_OPEN_METRIC, [_open], unit=A.RUNMETER_RUNS_OPEN_UNIT, description="Traces with runs in progress"
        )
        meter.create_observable_gauge(
            A.RUNMETER_RUNS_OLDEST_OPEN_AGE_METRIC,
            [_oldest],
            unit=A.RUNMETER_RUNS_OLDEST_OPEN_AGE_UNIT,
            description="Age of the oldest run in progress",
        )

    def record_run(self, r: RunRecord) -> None:
        by_model = r.cost_by_model
        model = max(by_model, key=by_model.__getitem__) if by_model else ""  # the costliest; the first of equals
        labels = self._labels
        base = {k: v for k, v in ((A.RUNMETER_RUN_OWNER, r.owner), (A.RUNMETER_RUN_PROJECT, r.project)) if k in labels}
        attrs = {**base, A.RUNMETER_RUN_OUTCOME: r.outcome or _OUTCOME_UNKNOWN, G.GEN_AI_REQUEST_MODEL: model}
        if A.RUNMETER_RUN_NAME in labels:
            attrs[A.RUNMETER_RUN_NAME] = r.name
        self.runs.add(1, attrs)
        self.run_cost.record(float(r.cost_usd), attrs)
        self.run_duration.record(r.wall_clock_s, attrs)
        for s in r.loop_signals:
            self.loop_signals.add(1, {**base, A.RUNMETER_LOOP_KIND: s.kind})
        for b in r.breaches:
            self.budget_breaches.add(1, {**base, A.RUNMETER_BUDGET_LIMIT: b.limit, A.RUNMETER_BUDGET_ACTION: b.action})
        if r.incomplete:
            self.runs_incomplete.add(1, base)
