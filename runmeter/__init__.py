"""runmeter: what an LLM agent run really costs.

The public API is re-exported here; ``runmeter.__all__`` is exactly it.
Configuration: :mod:`runmeter.config` and :mod:`runmeter.environment_variables`.
"""

from __future__ import annotations

from runmeter.config import ConfigError, Settings, load_settings
from runmeter.processor import Cost, PriceBook, TokenUsage

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Cost",
    "PriceBook",
    "Settings",
    "TokenUsage",
    "__version__",
    "load_settings",
]
