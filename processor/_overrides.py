"""Price overrides from ``runmeter.toml``: private models, aliases, local GPU-hour models.

::

    [pricing.models."acme-ft-4o-mini"]     # USD per million tokens
    input_mtok = 0.30
    cache_read_mtok = 0.15                 # optional
    cache_write_mtok = 0.375               # optional
    output_mtok = 1.20

    [pricing.aliases]
    "prod-chat" = "gpt-5.5"                # a deployment name -> a priced model

    [pricing.local."llama-3.3-70b"]
    gpu_hour_usd = 2.20                    # what one GPU costs per hour
    gpus = 2
    method = "duration"                    # or "throughput"
    tokens_per_second = 2400               # needed by "throughput"

A local model is priced one of two ways:

* ``duration`` (default): cost = call duration (s) / 3600 × ``gpu_hour_usd`` ×
  ``gpus``. What the GPUs cost while the call ran; right when the box serves
  one agent at a time.
* ``throughput``: cost = (input + output tokens) × ``gpu_hour_usd`` × ``gpus`` /
  (``tokens_per_second`` × 3600). A per-token rate derived from the box's
  sustained throughput; right when the box is shared and busy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from genai_prices import types as gp_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runmeter.core import CONFIG_FILENAME, validation_error
from runmeter.processor.pricing import MONEY_CONTEXT

__all__ = ["GpuHourPrice", "PriceOverrides", "TokenPrice"]

_HOUR = Decimal(3600)


class TokenPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_mtok: Decimal = Field(ge=0)
    output_mtok: Decimal = Field(ge=0)
    cache_read_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_mtok: Decimal | None = Field(default=None, ge=0)


class GpuHourPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    gpu_hour_usd: Decimal = Field(gt=0)
    gpus: int = Field(default=1, ge=1)
    method: Literal["duration", "throughput"] = "duration"
    tokens_per_second: Decimal | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _throughput_needs_rate(self) -> GpuHourPrice:
        if self.method == "throughput" and self.tokens_per_second is None:
            raise ValueError("method 'throughput' needs tokens_per_second")
        return self


class _Pricing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, TokenPrice] = {}
    aliases: dict[str, str] = {}
    local: dict[str, GpuHourPrice] = {}


@dataclass(frozen=True)
class PriceOverrides:
    """What ``[pricing]`` in a config file says; empty by default."""

    models: dict[str, TokenPrice] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    local: dict[str, GpuHourPrice] = field(default_factory=dict)
    origin: str = CONFIG_FILENAME

    @classmethod
    def from_mapping(
        cls, data: Any, path: Path | None = None, text: str = "", base: tuple[str, ...] = ()
    ) -> PriceOverrides:
        """Validate the ``[pricing]`` table; errors name the file, line and key.

        ``base`` is where runmeter's table sits in the file (``("tool", "runmeter")``
        in a pyproject.toml).
        """
        try:
            parsed = _Pricing.model_validate(data or {})
        except ValidationError as exc:
            raise validation_error(exc, path, text, base=base + ("pricing",)) from None
        return cls(dict(parsed.models), dict(parsed.aliases), dict(parsed.local), path.name if path else CONFIG_FILENAME)

    @property
    def token_source(self) -> str:
        return f"override:{self.origin}"

    @property
    def gpu_source(self) -> str:
        return f"gpu-hour:{self.origin}"

    def model_price(self, model: str) -> gp_types.ModelPrice | None:
        """A genai-prices ModelPrice for a per-token override, so one plan prices both."""
        p = self.models.get(model)
        if p is None:
            return None
        kwargs = {"input_mtok": p.input_mtok, "output_mtok": p.output_mtok}
        if p.cache_read_mtok is not None:
            kwargs["cache_read_mtok"] = p.cache_read_mtok
        if p.cache_write_mtok is not None:
            kwargs["cache_write_mtok"] = p.cache_write_mtok
        return gp_types.ModelPrice(**kwargs)

    def local_cost(self, model: str, usage: Any, duration_s: float | None) -> Decimal | None:
        """Cost of a call to a local model, or None when ``model`` is not local."""
        p = self.local.get(model)
        if p is None:
            return None
        ctx = MONEY_CONTEXT  # not the calling thread's decimal context (see pricing.MONEY_CONTEXT)
        hourly = ctx.multiply(p.gpu_hour_usd, p.gpus)
        if p.method == "throughput":
            assert p.tokens_per_second is not None
            tokens = usage.input_tokens + usage.output_tokens
            return ctx.divide(ctx.multiply(hourly, tokens), ctx.multiply(p.tokens_per_second, _HOUR))
        if duration_s is None or duration_s < 0:
            raise ValueError(f"local model {model!r} is priced by duration, and the call has none")
        return ctx.divide(ctx.multiply(hourly, Decimal(repr(duration_s))), _HOUR)
