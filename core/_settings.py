"""Where the lower packages get runmeter's settings without importing the facade that reads them.

``runmeter.config`` (the facade) registers its loader here when it is imported, which every
import of a ``runmeter.*`` package does first. Packages below it call :func:`load_settings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["VERSION", "load_settings", "register_settings_loader"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runmeter")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0+unknown"


VERSION = _version()  # pyproject.toml's, as installed: the one place the version is written

_loader: Callable[[], Any] | None = None


def register_settings_loader(loader: Callable[[], Any]) -> None:
    global _loader
    _loader = loader


def load_settings() -> Any:
    """The settings (``runmeter.toml``, environment), as the registered loader reads them.

    Raises ``ConfigError`` for a broken file, as the loader does."""
    if _loader is None:
        raise RuntimeError("no settings loader is registered (import runmeter first)")
    return _loader()
