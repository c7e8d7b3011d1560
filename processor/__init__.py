"""runmeter's processing stage: pricing, run assembly, loop signals, budgets.

``PriceBook`` prices usage with ``genai-prices`` (plus ``runmeter.toml``
overrides), resolving each model once::

    from runmeter.processor import PriceBook, TokenUsage
    cost = PriceBook().price("openai", "gpt-5.5", TokenUsage.from_openai(57, 21, cached_tokens=32))
    cost.usd  # 0.000771
"""

from __future__ import annotations

from runmeter.processor._configfile import ConfigError
from runmeter.processor._overrides import GpuHourPrice, PriceOverrides, TokenPrice
from runmeter.processor.pricing import Cost, PriceBook, TokenUsage

__all__ = [
    "ConfigError",
    "Cost",
    "GpuHourPrice",
    "PriceBook",
    "PriceOverrides",
    "TokenPrice",
    "TokenUsage",
]
