"""The dialect map: reads GenAI spans from any instrumentation, as data.

``dialects.yaml`` says which attributes carry each canonical field in the
current OpenTelemetry GenAI conventions, their deprecated names, OpenLLMetry,
OpenInference, OpenLIT, the Vercel AI SDK, Pydantic AI, and - from attributes whose
value is a JSON document - Langfuse and MLflow. :meth:`DialectMap.read` turns an
attribute mapping into a :class:`GenAIFields`; nothing here knows about spans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Dialect", "DialectMap", "GenAIFields", "load_dialects", "LLM_OPERATIONS", "MAX_CALL_USD"]

LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_PATH = Path(__file__).with_name("dialects.yaml")
_OPERATION = "\0operation"
_DIALECT = "\0dialect"
_OWN = "\0own"
_JSON = "\0json"
_UNKNOWN = object()
_DOTTED_PROVIDERS = frozenset({"openai", "anthropic", "google", "mistral", "xai", "azure", "amazon-bedrock"})
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cache_write_1h_tokens", "web_searches", "file_searches")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    detect: tuple[str, ...]
    input_excludes_cache_for: frozenset[str]
    output_excludes_reasoning_for: frozenset[str] = frozenset()
    # The output reported without the thoughts and no count of them, but a total that has them.
    output_short_of_total_for: frozenset[str] = frozenset()


@dataclass
class GenAIFields:
    """What a span says about a GenAI operation, in OpenTelemetry GenAI terms.

    Not slotted on purpose: :meth:`DialectMap.read` makes one per span without calling
    ``__init__`` (the class attributes are the defaults), and sets only what the span has.
    """

    dialect: str | None = None
    operation: str | None = None
    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None  # includes cache reads and writes
    total_tokens: int | None = None  # read only where a dialect needs it (see Dialect.output_short_of_total_for)
    output_tokens: int | None = None  # includes reasoning
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_write_1h_tokens: int | None = None  # the part of the cache write kept for an hour
    web_searches: int | None = None  # searches the provider ran on its side, priced per search
    file_searches: int | None = None
    external_cost_usd: float | None = None
    own: dict[str, Any] | None = None  # the caller's own string attributes and flags (see DialectMap.read_also)
    tool_name: str | None = None
    tool_arguments: str | None = None
    agent_name: str | None = None
    invalid_usage: str | None = None  # "name=value" of a token attribute that is not a count
    service_tier: str | None = None
    response_id: str | None = None

    @property
    def model(self) -> str | None:
        return self.response_model or self.request_model

    @property
    def has_tokens(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    @property
    def is_llm_call(self) -> bool:
        return self.operation in LLM_OPERATIONS


# A token count past this is not a count (the store's columns are 64-bit; sums must fit too).
_MAX_TOKENS = 10**15
# A cost past this for one call is not a cost (and sums of such values would reach infinity).
MAX_CALL_USD = 1e9


def _as_int(value: Any) -> int | None:
    if type(value) is int:  # the common case, first
        return value if 0 <= value <= _MAX_TOKENS else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= _MAX_TOKENS else None
    if isinstance(value, float) and value.is_integer() and 0 <= value <= _MAX_TOKENS:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        n = int(value)
        return n if n <= _MAX_TOKENS else None
    return None


def _as_float(value: Any) -> float | None:
    """A cost in USD: a finite number from 0 to MAX_CALL_USD (NaN, infinity and the like are not costs)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        # Compared before float(): a huge int would overflow it. NaN compares false; infinity is past the bound.
        return float(value) if 0 <= value <= MAX_CALL_USD else None
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return f if 0 <= f <= MAX_CALL_USD else None
    return None


def _as_str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read spans with one set of attribute names."""

    fields: tuple[tuple[str, tuple[str, ...], Callable[[Any], Any]], ...]  # field, names present by rank, converter
    own: tuple[tuple[str, str, bool], ...]  # name, key in GenAIFields.own, whether a flag
    operation: tuple[str, dict[str, str]] | None  # the best-ranked operation attribute present, its values
    dialect: Dialect | None
    tool_call: bool = False  # an attribute that only a tool call carries is present
    json: tuple[tuple[str, _JsonReads], ...] = ()  # JSON-valued attributes present, and what to read from each
    adjusts: bool = False  # the dialect adjusts some provider's token counts


# Where a field may be in a JSON document: alternatives, first present wins; each a sum of terms, a
# term a key path (("a", "b"); () the document itself) or a prefix of top-level keys ("input_", True).
_Term = tuple[tuple[str, ...], bool]
_JsonReads = tuple[tuple[str, tuple[tuple[_Term, ...], ...], Callable[[Any], Any]], ...]
# A usage or cost document is a few hundred bytes; anything much longer is not one, and is not parsed.
_MAX_JSON_CHARS = 2048
# LangChain's token details written with str(): {'audio': 0, 'cache_read': 8000}. Read by pattern
# (names to counts), not compiled: ast.literal_eval costs ~40 us for one, a dozen times json.loads.
_PY_DICT = re.compile(r"\{(?:'\w+': (?:\d+|None)(?:, |(?=\})))*\}")
_PY_ITEM = re.compile(r"'(\w+)': (\d+)")


def _json_term(text: str) -> _Term:
    if text == ".":
        return (), False
    if text.endswith("*"):
        return (text[:-1],), True
    return tuple(text.split(".")), False


def _json_doc(raw: Any) -> Any:
    """The JSON document an attribute carries, or ``raw`` itself if it is not one (a plain string
    where MLflow would have encoded one, a value too long to be a usage). A dict of counts written
    with Python's ``str()`` (LangSmith's token details: ``{'cache_read': 10}``) is read too."""
    if not isinstance(raw, str) or len(raw) > _MAX_JSON_CHARS:
        return raw
    if raw.startswith("{'"):  # never JSON
        return {k: int(v) for k, v in _PY_ITEM.findall(raw)} if _PY_DICT.fullmatch(raw) else raw
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the parser's depth
        return raw


def _json_value(doc: Any, terms: tuple[_Term, ...], conv: Callable[[Any], Any]) -> tuple[bool, Any]:
    """(present, value) of one alternative: a value read with ``conv``, or a sum of counts."""
    if len(terms) == 1 and not terms[0][1]:
        node = doc
        for key in terms[0][0]:
            if not isinstance(node, dict) or key not in node:
                return False, None
            node = node[key]
        return True, conv(node)
    if not isinstance(doc, dict):
        return False, None
    values = []
    for path, prefix in terms:
        if prefix:
            # the counts among them (Langfuse keeps only ints there; a note or a details object is not one)
            values += [v for k, v in doc.items() if k.startswith(path[0]) and type(v) in (int, float)]
        elif len(path) == 1 and path[0] in doc:
            values.append(doc[path[0]])
    if not values:
        return False, None
    counts = [conv(v) for v in values]
    if None in counts:
        return True, None
    if conv is _as_float:  # costs summed as written (0.1 + 0.2 is 0.3, not 0.30000000000000004)
        return True, conv(float(sum(Decimal(repr(c)) for c in counts)))
    return True, conv(sum(counts))


_MAX_PLANS = 4096
_blank = object.__new__


def _total(value: Any) -> int | None:
    """A total: a count, else ignored (unlike a part, a total that is not a count makes no call unpriced)."""
    return _as_int(value)


def _converter(field_name: str) -> Callable[[Any], Any]:
    if field_name == "total_tokens":
        return _total
    return _as_int if field_name in _TOKEN_FIELDS else _as_float if field_name == "external_cost_usd" else _as_str


class DialectMap:
    """Compiled ``dialects.yaml``."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        fields = doc["fields"]
        unknown = set(fields) - set(GenAIFields.__dataclass_fields__)
        if unknown:
            raise ValueError(f"dialects.yaml: unknown fields {sorted(unknown)}")
        self.fields: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in fields.items()}
        self.operation_rules: tuple[tuple[str, dict[str, str]], ...] = tuple(
            (rule["attribute"], dict(rule["values"])) for rule in doc["operation"]
        )
        self.tokens_imply_llm_call = bool(doc.get("tokens_imply_llm_call", False))
        self.dialects = tuple(
            Dialect(d["name"], tuple(d["detect"]), frozenset(d.get("input_excludes_cache_for_providers", ())),
                    frozenset(d.get("output_excludes_reasoning_for_providers", ())),
                    frozenset(d.get("output_short_of_total_for_providers", ())))
            for d in doc["dialects"]
        )
        self.provider_aliases: dict[str, str] = dict(doc.get("provider_aliases", {}))
        self.not_providers = frozenset(doc.get("not_providers", ()))
        self.price_providers: dict[str, str] = dict(doc.get("price_providers", {}))
        # genai-prices id -> the OpenTelemetry name (the first listed wins: google -> gcp.gemini)
        self._otel_providers: dict[str, str] = {}
        for otel, price in self.price_providers.items():
            self._otel_providers.setdefault(price, otel)
        self.tool_call_implied_by = frozenset(doc.get("tool_call_implied_by", ()))
        self.tool_arguments_keys: tuple[str, ...] = tuple(doc.get("tool_arguments_keys", ()))
        self.handoff_span_prefixes: tuple[str, ...] = tuple(doc.get("handoff_span_prefixes", ()))
        self.handoff_tool_prefixes: tuple[str, ...] = tuple(doc.get("handoff_tool_prefixes", ()))
        # attribute name -> [(field, rank, converter)], so reading walks the span's attributes once
        self._index: dict[str, list[tuple[str, int, Callable[[Any], Any]]]] = {}
        for name, keys in self.fields.items():
            conv = _converter(name)
            for rank, key in enumerate(keys):
                self._index.setdefault(key, []).append((name, rank, conv))
        for rank, (key, _values) in enumerate(self.operation_rules):
            self._index.setdefault(key, []).append((_OPERATION, rank, _as_str))
        for rank, d in enumerate(self.dialects):
            for key in d.detect:
                self._index.setdefault(key, []).append((_DIALECT, rank, _as_str))
        self._json: dict[str, _JsonReads] = {}
        for attribute, wanted in (doc.get("json_fields") or {}).items():
            unknown = set(wanted) - set(GenAIFields.__dataclass_fields__)
            if unknown:
                raise ValueError(f"dialects.yaml: json_fields.{attribute}: unknown fields {sorted(unknown)}")
            self._json[attribute] = tuple(
                (name, tuple(tuple(_json_term(t) for t in alt.split("+")) for alt in alts), _converter(name))
                for name, alts in wanted.items()
            )
            self._index.setdefault(attribute, []).append((_JSON, 0, _as_str))
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._providers: dict[str, str | None] = {}  # a provider name as spans give it -> as OpenTelemetry names it

    def read_also(self, names: Mapping[str, str], flags: Mapping[str, str] | None = None) -> None:
        """Also collect these string attributes (name -> key in ``GenAIFields.own``) in the same pass,
        and these ``flags``: boolean attributes, collected as ``True`` when they are ``True``."""
        for name, key in names.items():
            self._index.setdefault(name, []).append((_OWN, 0, key))  # type: ignore[arg-type]
        for name, key in (flags or {}).items():
            self._index.setdefault(name, []).append((_OWN, 1, key))  # type: ignore[arg-type]
        self._plans.clear()

    def read(self, attrs: Mapping[str, Any]) -> GenAIFields:
        """Canonical GenAI fields of an attribute mapping (never raises on bad values).

        For each field the value of the highest-ranked name present (and valid) wins.
        Spans from one instrumentation carry the same attribute names again and
        again, so the names a span has are compiled once into a :class:`_Plan`
        (which names feed which field, in rank order) and the plan is reused.
        """
        keys = tuple(attrs)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._compile(keys)
        out = _blank(GenAIFields)
        for field_name, names, conv in plan.fields:
            for name in names:
                raw = attrs[name]
                # A plain non-empty string where a string is read needs no converting (most fields).
                value = raw if conv is _as_str and type(raw) is str and raw else conv(raw)
                if value is not None:
                    setattr(out, field_name, value)
                    break
                if conv is _as_int and out.invalid_usage is None:
                    out.invalid_usage = f"{name}={raw!r}"[:200]
        if plan.own:
            own = {}
            for name, slot, flag in plan.own:
                raw = attrs[name]
                if (raw is True) if flag else (type(raw) is str and raw):
                    own[slot] = raw
            if own:
                out.own = own
        for attribute, reads in plan.json:
            doc = _json_doc(attrs[attribute])
            for field_name, alternatives, conv in reads:
                if getattr(out, field_name) is not None:
                    continue  # an attribute of its own gave it
                for terms in alternatives:
                    present, value = _json_value(doc, terms, conv)
                    if value is not None:
                        setattr(out, field_name, value)
                        break
                    if present:
                        if conv is _as_int and out.invalid_usage is None:
                            out.invalid_usage = f"{attribute}={attrs[attribute]!r}"[:200]
                        break
        if plan.operation is not None:
            op_value = attrs[plan.operation[0]]
            out.operation = plan.operation[1].get(op_value) if isinstance(op_value, str) else None
        if out.provider is not None:
            out.provider = self._provider(out.provider)
        dialect = plan.dialect
        if dialect is not None:
            out.dialect = dialect.name
        if plan.adjusts and dialect is not None:  # the dialect reports some provider's counts its own way
            if out.provider in dialect.input_excludes_cache_for and out.input_tokens is not None:
                out.input_tokens += (out.cache_read_tokens or 0) + (out.cache_write_tokens or 0)
            if out.provider in dialect.output_excludes_reasoning_for and out.output_tokens is not None:
                out.output_tokens += out.reasoning_tokens or 0
            if (out.provider in dialect.output_short_of_total_for and out.total_tokens is not None
                    and out.input_tokens is not None and out.output_tokens is not None and out.reasoning_tokens is None):
                thoughts = out.total_tokens - out.input_tokens - out.output_tokens
                if thoughts > 0:
                    out.reasoning_tokens = thoughts
                    out.output_tokens += thoughts
        if out.operation is None and plan.operation is None and self.tokens_imply_llm_call:
            if (out.has_tokens or out.invalid_usage is not None) and out.model:
                out.operation = "chat"
        if out.operation is None and plan.tool_call and not out.has_tokens:
            out.operation = "execute_tool"  # a tool span that names its tool but not its operation
        return out

    def _provider(self, raw: str) -> str | None:
        """The provider a span names, as OpenTelemetry names it (or None: a name that is no provider)."""
        known = self._providers.get(raw, _UNKNOWN)
        if known is not _UNKNOWN:
            return known  # type: ignore[return-value]
        provider = raw
        if "." in provider and provider.split(".", 1)[0] in _DOTTED_PROVIDERS:
            provider = provider.split(".", 1)[0]  # Vercel's "openai.chat", "anthropic.messages"
        found = None if provider in self.not_providers else self.provider_aliases.get(provider, provider)
        if len(self._providers) >= _MAX_PLANS:
            self._providers.clear()  # bounded whatever names arrive
        self._providers[raw] = found
        return found

    def _compile(self, keys: tuple[str, ...]) -> _Plan:
        """What to read from spans with exactly these attribute names (cached, bounded)."""
        ranked: dict[str, list[tuple[int, str]]] = {}
        convs: dict[str, Callable[[Any], Any]] = {}
        own: list[tuple[str, str, bool]] = []
        json_reads: list[tuple[str, _JsonReads]] = []
        op: tuple[int, str] | None = None
        dialect_rank = len(self.dialects)
        for key in keys:
            for field_name, rank, conv in self._index.get(key, ()):
                if field_name == _OWN:
                    own.append((key, conv, rank == 1))  # type: ignore[arg-type]  # conv: the key in own; rank 1: a flag
                elif field_name == _JSON:
                    json_reads.append((key, self._json[key]))
                elif field_name == _OPERATION:
                    if op is None or rank < op[0]:
                        op = (rank, key)
                elif field_name == _DIALECT:
                    dialect_rank = min(dialect_rank, rank)
                else:
                    ranked.setdefault(field_name, []).append((rank, key))
                    convs[field_name] = conv
        dialect = self.dialects[dialect_rank] if dialect_rank < len(self.dialects) else None
        plan = _Plan(
            fields=tuple((f, tuple(k for _, k in sorted(names)), convs[f]) for f, names in ranked.items()),
            own=tuple(own),
            operation=(op[1], self.operation_rules[op[0]][1]) if op is not None else None,
            dialect=dialect,
            adjusts=dialect is not None and bool(
                dialect.input_excludes_cache_for or dialect.output_excludes_reasoning_for or dialect.output_short_of_total_for),
            tool_call=not self.tool_call_implied_by.isdisjoint(keys),
            json=tuple(json_reads),
        )
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()  # bounded whatever attribute names arrive
        self._plans[keys] = plan
        return plan

    def tool_arguments(self, raw: str) -> str:
        """The part of a tool call's arguments that says what the call did (see ``tool_arguments_keys``)."""
        if not self.tool_arguments_keys or not raw.startswith("{"):
            return raw
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw
        if not isinstance(parsed, dict):
            return raw
        kept = {k: parsed[k] for k in self.tool_arguments_keys if k in parsed}
        return json.dumps(kept, sort_keys=True, default=str) if kept else raw

    def otel_provider(self, price_provider: str) -> str:
        """The OpenTelemetry ``gen_ai.provider.name`` for a genai-prices provider id."""
        return self._otel_providers.get(price_provider, price_provider)

    def price_provider(self, provider: str | None) -> str | None:
        """The genai-prices provider id for an OpenTelemetry provider name."""
        if provider is None:
            return None
        return self.price_providers.get(provider, provider)


@lru_cache(maxsize=1)
def load_dialects(path: Path = _PATH) -> DialectMap:
    with path.open(encoding="utf-8") as f:
        return DialectMap(yaml.safe_load(f))
