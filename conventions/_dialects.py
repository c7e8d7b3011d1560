"""The dialect map: reads GenAI spans from any instrumentation, as data.

``dialects.yaml`` says which attributes carry each canonical field in the
current OpenTelemetry GenAI conventions, their deprecated names, OpenLLMetry,
OpenInference, OpenLIT and the Vercel AI SDK. :meth:`DialectMap.read` turns an
attribute mapping into a :class:`GenAIFields`; nothing here knows about spans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Dialect", "DialectMap", "GenAIFields", "load_dialects", "LLM_OPERATIONS"]

LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_PATH = Path(__file__).with_name("dialects.yaml")
_OPERATION = "\0operation"
_DIALECT = "\0dialect"
_OWN = "\0own"
_DOTTED_PROVIDERS = frozenset({"openai", "anthropic", "google", "mistral", "xai", "azure", "amazon-bedrock"})
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    detect: tuple[str, ...]
    input_excludes_cache_for: frozenset[str]


@dataclass(slots=True)
class GenAIFields:
    """What a span says about a GenAI operation, in OpenTelemetry GenAI terms."""

    dialect: str | None = None
    operation: str | None = None
    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None  # includes cache reads and writes
    output_tokens: int | None = None  # includes reasoning
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    external_cost_usd: float | None = None
    own: dict[str, str] | None = None  # the caller's own string attributes (see DialectMap.read_also)
    tool_name: str | None = None
    tool_arguments: str | None = None
    agent_name: str | None = None

    @property
    def model(self) -> str | None:
        return self.response_model or self.request_model

    @property
    def has_tokens(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    @property
    def is_llm_call(self) -> bool:
        return self.operation in LLM_OPERATIONS


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value and value >= 0 else None
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return f if f == f and f >= 0 else None
    return None


def _as_str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


class DialectMap:
    """Compiled ``dialects.yaml``."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        fields = doc["fields"]
        unknown = set(fields) - set(GenAIFields.__slots__)  # type: ignore[attr-defined]
        if unknown:
            raise ValueError(f"dialects.yaml: unknown fields {sorted(unknown)}")
        self.fields: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in fields.items()}
        self.operation_rules: tuple[tuple[str, dict[str, str]], ...] = tuple(
            (rule["attribute"], dict(rule["values"])) for rule in doc["operation"]
        )
        self.tokens_imply_llm_call = bool(doc.get("tokens_imply_llm_call", False))
        self.dialects = tuple(
            Dialect(d["name"], tuple(d["detect"]), frozenset(d.get("input_excludes_cache_for_providers", ())))
            for d in doc["dialects"]
        )
        self.provider_aliases: dict[str, str] = dict(doc.get("provider_aliases", {}))
        self.price_providers: dict[str, str] = dict(doc.get("price_providers", {}))
        # attribute name -> [(field, rank, converter)], so reading walks the span's attributes once
        self._index: dict[str, list[tuple[str, int, Callable[[Any], Any]]]] = {}
        for name, keys in self.fields.items():
            conv = _as_int if name in _TOKEN_FIELDS else _as_float if name == "external_cost_usd" else _as_str
            for rank, key in enumerate(keys):
                self._index.setdefault(key, []).append((name, rank, conv))
        for rank, (key, _values) in enumerate(self.operation_rules):
            self._index.setdefault(key, []).append((_OPERATION, rank, _as_str))
        for rank, d in enumerate(self.dialects):
            for key in d.detect:
                self._index.setdefault(key, []).append((_DIALECT, rank, _as_str))

    def read_also(self, names: Mapping[str, str]) -> None:
        """Also collect these string attributes (name -> key in ``GenAIFields.own``) in the same pass."""
        for name, key in names.items():
            self._index.setdefault(name, []).append((_OWN, 0, key))  # type: ignore[arg-type]

    def read(self, attrs: Mapping[str, Any]) -> GenAIFields:
        """Canonical GenAI fields of an attribute mapping (never raises on bad values).

        Walks the span's own attributes once (a span has a dozen, the map knows
        ~60 names), keeping for each field the value of the highest-ranked name.
        """
        out = GenAIFields()
        best: dict[str, int] = {}
        op_rank = len(self.operation_rules)
        op_value: Any = None
        dialect_rank = len(self.dialects)
        index = self._index
        for key, raw in attrs.items():
            entries = index.get(key)
            if entries is None:
                continue
            for field_name, rank, conv in entries:
                if field_name == _OWN:
                    if isinstance(raw, str) and raw:
                        if out.own is None:
                            out.own = {}
                        out.own[conv] = raw  # type: ignore[index]
                    continue
                if field_name == _OPERATION:
                    if rank < op_rank:
                        op_rank, op_value = rank, raw
                    continue
                if field_name == _DIALECT:
                    if rank < dialect_rank:
                        dialect_rank = rank
                    continue
                if rank >= best.get(field_name, 1 << 30):
                    continue
                value = conv(raw)
                if value is not None:
                    best[field_name] = rank
                    setattr(out, field_name, value)
        if op_rank < len(self.operation_rules):
            values = self.operation_rules[op_rank][1]
            out.operation = values.get(op_value) if isinstance(op_value, str) else None
        if out.provider is not None:
            provider = out.provider
            if "." in provider and provider.split(".", 1)[0] in _DOTTED_PROVIDERS:
                provider = provider.split(".", 1)[0]  # Vercel's "openai.chat", "anthropic.messages"
            out.provider = self.provider_aliases.get(provider, provider)
        if dialect_rank < len(self.dialects):
            dialect = self.dialects[dialect_rank]
            out.dialect = dialect.name
            if out.provider in dialect.input_excludes_cache_for and out.input_tokens is not None:
                out.input_tokens += (out.cache_read_tokens or 0) + (out.cache_write_tokens or 0)
        if out.operation is None and op_rank == len(self.operation_rules) and self.tokens_imply_llm_call:
            if out.has_tokens and out.model:
                out.operation = "chat"
        return out

    def price_provider(self, provider: str | None) -> str | None:
        """The genai-prices provider id for an OpenTelemetry provider name."""
        if provider is None:
            return None
        return self.price_providers.get(provider, provider)


@lru_cache(maxsize=1)
def load_dialects(path: Path = _PATH) -> DialectMap:
    with path.open(encoding="utf-8") as f:
        return DialectMap(yaml.safe_load(f))
