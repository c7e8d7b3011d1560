"""runmeter: what an LLM agent run really costs.

The public API is re-exported here; ``runmeter.__all__`` is exactly it::

    import runmeter
    from runmeter import Budget

    with runmeter.run("triage-inbox", owner="ana", project="sales", budget=Budget(max_cost_usd=0.50)) as run:
        ...
        run.accept()

Configuration: :mod:`runmeter.config` and :mod:`runmeter.environment_variables`.
"""

from __future__ import annotations

from runmeter._outcome import outcome
from runmeter.core import VERSION
from runmeter.config import ConfigError, Settings, load_settings
from runmeter.instrumentation import run, tool
from runmeter.processor import Budget, BudgetExceeded, Cost, PriceBook, TokenUsage

__version__ = VERSION

__all__ = [
    "Budget",
    "BudgetExceeded",
    "ConfigError",
    "Cost",
    "PriceBook",
    "Settings",
    "TokenUsage",
    "__version__",
    "load_settings",
    "outcome",
    "run",
    "tool",
]
