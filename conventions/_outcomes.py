"""The outcomes a run can have, from the registry (``runmeter.run.outcome``): one check for all."""

from __future__ import annotations

from runmeter.conventions.attributes import RunmeterRunOutcomeValues

__all__ = ["OUTCOMES", "check_outcome"]

OUTCOMES: tuple[str, ...] = tuple(v.value for v in RunmeterRunOutcomeValues)


def check_outcome(value: object) -> str:
    """``value`` if it is an outcome; else ValueError saying which are."""
    if value not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {value!r}")
    return value  # type: ignore[return-value]
