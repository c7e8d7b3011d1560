"""runmeter's settings: one typed object from ``runmeter.toml`` and the environment.

Resolution order for each value: the environment (``RUNMETER_*``, see
:mod:`runmeter.environment_variables`), then the config file, then the
default. The config file is ``$RUNMETER_CONFIG``, else ``./runmeter.toml``,
else ``[tool.runmeter]`` in ``./pyproject.toml``; none at all is fine.

A file with a mistake raises :class:`ConfigError` naming the file, line and
key. A bad environment value warns and falls back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runmeter import environment_variables as ev
from runmeter.collector import CollectorSettings
from runmeter.processor import ConfigError, PriceOverrides, RunLimits
from runmeter.core import CONFIG_FILENAME, read_toml, register_settings_loader, report_config_error, validation_error
from runmeter.alerts import AlertSettings
from runmeter.limits import LimitSettings

__all__ = [
    "CollectorSettings", "ConfigError", "RunSettings", "Settings", "StorageSettings", "UISettings", "find_config_file", "load_settings",
    "report_config_error",
]

_log = logging.getLogger(__name__)


class StorageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    clickhouse_url: str = "chdb://.runmeter"
    spool_dir: str | None = None
    spool_max_bytes: int = Field(default=1 << 30, gt=0)


class RunSettings(BaseModel):
    """``[runs]``: the RunProcessor's limits (their defaults are RunLimits', written once there), checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    grace_s: float = Field(default=RunLimits.grace_s, ge=0)
    quiet_s: float = Field(default=RunLimits.quiet_s, gt=0)
    rootless_quiet_s: float = Field(default=RunLimits.rootless_quiet_s, gt=0)
    max_open_runs: int = Field(default=RunLimits.max_open_runs, ge=1)
    max_spans_per_run: int = Field(default=RunLimits.max_spans_per_run, ge=1)
    max_run_age_s: float = Field(default=RunLimits.max_run_age_s, gt=0)
    loop_threshold: int = Field(default=RunLimits.loop_threshold, ge=2)
    abandoned_after_s: float = Field(default=86_400.0, gt=0)  # reports only: a run with no outcome this long is abandoned


class UISettings(BaseModel):
    """``[ui]``: the pages of ``runmeter ui`` and the HTML report."""

    model_config = ConfigDict(extra="forbid")
    # A link from a run to its trace, e.g. http://localhost:16686/trace/{trace_id} (Jaeger) or
    # http://localhost:3000/explore?...{trace_id}... (Grafana Tempo); empty: no link.
    trace_url: str = ""
    long_run_s: float = Field(default=600.0, gt=0)  # a run longer than this is an event on the overview

    @field_validator("trace_url")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        if value and ("{trace_id}" not in value or not value.startswith(("http://", "https://"))):
            raise ValueError("an http(s) URL with {trace_id} in it, e.g. http://localhost:16686/trace/{trace_id}")
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    storage: StorageSettings = StorageSettings()
    runs: RunSettings = RunSettings()
    collector: CollectorSettings = CollectorSettings()
    ui: UISettings = UISettings()
    limits: LimitSettings = LimitSettings()
    alerts: AlertSettings = AlertSettings()
    providers: dict[str, str] = {}
    pricing: dict[str, Any] = {}


class Settings(BaseModel):
    """Everything runmeter is configured with."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    storage: StorageSettings = StorageSettings()
    runs: RunSettings = RunSettings()
    collector: CollectorSettings = CollectorSettings()
    ui: UISettings = UISettings()
    limits: LimitSettings = LimitSettings()
    """``[limits]``: spend limits by owner, project, model or task (runmeter/limits.py)."""
    alerts: AlertSettings = AlertSettings()
    """``[alerts]``: rules and where alerts go (runmeter/alerts.py)."""
    providers: dict[str, str] = {}
    """Base-URL prefix -> provider name, for OpenAI-compatible servers (vLLM, Ollama...)."""
    pricing: PriceOverrides = PriceOverrides()
    source: str | None = None
    """The config file the settings came from, if any."""


# environment variable -> (section, field)
_ENV_FIELDS: dict[str, tuple[str, str]] = {
    ev.RUNMETER_CLICKHOUSE_URL: ("storage", "clickhouse_url"),
    ev.RUNMETER_SPOOL_DIR: ("storage", "spool_dir"),
    ev.RUNMETER_SPOOL_MAX_BYTES: ("storage", "spool_max_bytes"),
    ev.RUNMETER_RUN_GRACE_S: ("runs", "grace_s"),
    ev.RUNMETER_RUN_QUIET_S: ("runs", "quiet_s"),
    ev.RUNMETER_RUN_ROOTLESS_QUIET_S: ("runs", "rootless_quiet_s"),
    ev.RUNMETER_MAX_OPEN_RUNS: ("runs", "max_open_runs"),
    ev.RUNMETER_MAX_SPANS_PER_RUN: ("runs", "max_spans_per_run"),
    ev.RUNMETER_MAX_RUN_AGE_S: ("runs", "max_run_age_s"),
    ev.RUNMETER_LOOP_THRESHOLD: ("runs", "loop_threshold"),
    ev.RUNMETER_ABANDONED_AFTER_S: ("runs", "abandoned_after_s"),
    ev.RUNMETER_TRACE_URL: ("ui", "trace_url"),
}
# Every [collector] key also reads from RUNMETER_COLLECTOR_<KEY> (e.g. RUNMETER_COLLECTOR_WAL_DIR).
_ENV_FIELDS.update({f"RUNMETER_COLLECTOR_{name.upper()}": ("collector", name) for name in CollectorSettings.model_fields})
_SECTIONS: dict[str, type[BaseModel]] = {
    "storage": StorageSettings, "runs": RunSettings, "collector": CollectorSettings, "ui": UISettings,
}


def find_config_file(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> tuple[Path, tuple[str, ...]] | None:
    """The config file and the table in it that holds runmeter's settings."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    explicit = env.get(ev.RUNMETER_CONFIG)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(path, None, ev.RUNMETER_CONFIG, "no such config file")
        return path, ()
    if (cwd / CONFIG_FILENAME).is_file():
        return cwd / CONFIG_FILENAME, ()
    if (cwd / "pyproject.toml").is_file():
        return cwd / "pyproject.toml", ("tool", "runmeter")
    return None


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings; ``path`` overrides the file search."""
    env = os.environ if env is None else env
    if path is not None:
        path = Path(path)
        found: tuple[Path, tuple[str, ...]] | None = (path, ("tool", "runmeter") if path.name == "pyproject.toml" else ())
    else:
        found = find_config_file(env)
    raw: dict[str, Any] = {}
    text = ""
    source = None
    base: tuple[str, ...] = ()
    if found is not None:
        file, base = found
        data, text = read_toml(file)
        for part in base:
            data = data.get(part, {}) if isinstance(data, dict) else {}
        raw = data if isinstance(data, dict) else {}
        source = str(file)
        try:
            parsed = _File.model_validate(raw)
        except ValidationError as exc:
            raise validation_error(exc, file, text, base) from None
    else:
        parsed = _File()
    sections = {"storage": parsed.storage.model_dump(), "runs": parsed.runs.model_dump(), "collector": parsed.collector.model_dump(),
                "ui": parsed.ui.model_dump()}
    for var, (section, field) in _ENV_FIELDS.items():
        value = env.get(var)
        if value is None or value == "":
            continue
        trial = dict(sections[section], **{field: value})
        try:
            _SECTIONS[section].model_validate(trial)
        except ValidationError as exc:
            _log.warning("ignoring %s=%r: %s; using %r", var, value, exc.errors()[0]["msg"], sections[section][field])
            continue
        sections[section] = trial
    pricing = PriceOverrides.from_mapping(raw.get("pricing"), Path(source) if source else None, text, base)
    return Settings(
        storage=StorageSettings.model_validate(sections["storage"]),
        runs=RunSettings.model_validate(sections["runs"]),
        collector=CollectorSettings.model_validate(sections["collector"]),
        ui=UISettings.model_validate(sections["ui"]),
        limits=parsed.limits,
        alerts=parsed.alerts,
        providers=dict(parsed.providers),
        pricing=pricing,
        source=source,
    )


# The lower packages read settings through runmeter.core, never by importing this facade module.
register_settings_loader(load_settings)
