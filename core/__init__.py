"""runmeter's bottom layer: what every package may use, and nothing that uses them.

- :func:`internal_error` and :func:`bad_value`: runmeter's own failures and the bad input it
  met, logged once per place and counted, never raised into the user's program;
- :class:`ConfigError` and the TOML reader that names the file, line and key of a mistake;
- :func:`load_settings`: the settings, from the loader the facade registers;
- :func:`redact`: key-shaped strings out of free text before it is stored;
- :func:`renew_locks_after_fork`: locks a forked child gets back unlocked;
- :func:`quick_init`: a frozen dataclass whose instances cost half as much to make (the hot path's);
- :class:`Thread`: a thread whose name ``top -H``, ``perf`` and ``py-spy`` show too.
"""

from __future__ import annotations

from runmeter.core._cache import IdentityCache
from runmeter.core._configfile import CONFIG_FILENAME, ConfigError, line_of, read_toml, validation_error
from runmeter.core._fork import renew_locks_after_fork
from runmeter.core._frozen import quick_init
from runmeter.core._redact import REDACTED, redact
from runmeter.core._selfcheck import bad_value, bad_value_counts, internal_error, internal_error_counts, report_config_error, warn_once
from runmeter.core._settings import VERSION, load_settings, register_settings_loader
from runmeter.core._threads import Thread, name_pool_thread, name_this_thread, native_name, restore_thread_name

__all__ = [
    "CONFIG_FILENAME",
    "VERSION",
    "REDACTED",
    "ConfigError",
    "Thread",
    "IdentityCache",
    "bad_value",
    "bad_value_counts",
    "internal_error",
    "internal_error_counts",
    "line_of",
    "load_settings",
    "name_pool_thread",
    "name_this_thread",
    "native_name",
    "quick_init",
    "read_toml",
    "renew_locks_after_fork",
    "restore_thread_name",
    "redact",
    "register_settings_loader",
    "report_config_error",
    "validation_error",
    "warn_once",
]
