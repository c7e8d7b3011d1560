"""Pricing of model calls: ``genai-prices`` resolved once, then priced fast.

``PriceBook.price(provider, model, usage)`` returns a :class:`Cost`. The first
call for a (provider, model) looks the model up in ``genai-prices`` (or in the
overrides of ``runmeter.toml``) and compiles its price into a small *plan*: the
priced units, their prices and which more specific units are carved out of
them (cache reads out of input tokens, and so on), made into one function of
integer arithmetic. Later calls only run the plan, which gives exactly
``genai_prices.calc_price``'s numbers (a test holds every model of the snapshot to
it, and ``benchmarks/pricing.py`` asserts it) at a fraction of its time, whatever
decimal context the calling thread has set.

Token semantics: :class:`TokenUsage` follows the OpenTelemetry GenAI
conventions, which are also genai-prices' — ``input_tokens`` is the total and
*includes* cache reads and writes; ``output_tokens`` includes reasoning. Build
one with :meth:`TokenUsage.from_openai` or :meth:`TokenUsage.from_anthropic` so
each provider's own reporting is mapped correctly (OpenAI's ``prompt_tokens``
already contain the cached tokens; Anthropic's ``input_tokens`` do not).

A model with no known price gives ``Cost.unpriced`` and no dollar figure —
never a silent zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal
from typing import TYPE_CHECKING, Any, Union

import genai_prices
from genai_prices import data_snapshot
from genai_prices import types as gp_types
from genai_prices.units import _get_registry

from runmeter.conventions import attributes as A
from runmeter.core import IdentityCache, quick_init, renew_locks_after_fork
from runmeter.conventions import genai as G

if TYPE_CHECKING:
    from runmeter.processor._overrides import PriceOverrides

__all__ = ["MONEY_CONTEXT", "Cost", "PriceBook", "TokenUsage", "provider_for_base_url", "write_cost_attributes"]

GENAI_PRICES_SOURCE = f"genai-prices@{genai_prices.__version__}"
_ZERO = Decimal(0)
_CURRENCY = "USD"
_MAX_CACHED = 4096  # (provider, model[, day]) entries; remote spans may name any model
_NS_PER_DAY = 86_400 * 10**9
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BEDROCK_VENDORS = ("anthropic", "meta", "amazon", "mistral", "cohere", "ai21", "deepseek", "qwen", "openai", "writer")
# Bedrock's cross-region inference profiles put a region group before the vendor (us.anthropic...).
_BEDROCK_REGIONS = ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca")


def _bedrock_shaped(model: str) -> bool:
    """Whether a model id is Bedrock's own: an ARN, or ``[region.]vendor.model`` (us.anthropic.claude-...)."""
    if model.startswith("arn:aws"):
        return True
    parts = model.split(".", 2)
    if len(parts) == 3 and parts[0] in _BEDROCK_REGIONS:
        parts = parts[1:]
    return len(parts) > 1 and parts[0] in _BEDROCK_VENDORS


def provider_for_base_url(url: str) -> str | None:
    """The genai-prices provider whose API a base URL is (Groq, Together, Fireworks, DeepSeek,
    Mistral, OpenRouter, x-ai, Azure OpenAI...), by genai-prices' own URL patterns; None if none."""
    try:
        return data_snapshot.get_snapshot().find_provider(None, None, url).id
    except LookupError:
        return None


@quick_init
@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens of one call, in OpenTelemetry GenAI semantics.

    ``input_tokens`` includes ``cache_read_tokens`` and ``cache_write_tokens``;
    ``output_tokens`` includes ``reasoning_tokens``; ``cache_write_1h_tokens`` is the part of
    ``cache_write_tokens`` kept for an hour (Anthropic prices it at 2x input, the 5-minute rest at 1.25x).
    ``web_searches`` and ``file_searches`` count the searches the provider ran on its side, priced
    per search.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    web_searches: int = 0
    file_searches: int = 0

    @classmethod
    def from_openai(
        cls,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> TokenUsage:
        """OpenAI reports cached (and, newer, cache-written) tokens as part of ``prompt_tokens``."""
        return cls(
            input_tokens=prompt_tokens or 0,
            output_tokens=completion_tokens or 0,
            cache_read_tokens=cached_tokens or 0,
            cache_write_tokens=cache_write_tokens or 0,
            reasoning_tokens=reasoning_tokens or 0,
        )

    @classmethod
    def from_anthropic(
        cls,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_input_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        ephemeral_1h_input_tokens: int | None = None,
        web_search_requests: int | None = None,
    ) -> TokenUsage:
        """Anthropic reports cache reads and writes *apart* from ``input_tokens``, the writes kept
        for an hour within ``cache_creation`` (``ephemeral_1h_input_tokens``), and its web search
        tool's searches in ``server_tool_use`` (``web_search_requests``).

        A part that is not a count is kept as it came, so :meth:`problem` names it."""
        inp = input_tokens or 0
        read = cache_read_input_tokens or 0
        write = cache_creation_input_tokens or 0
        total = inp + read + write if type(inp) is int and type(read) is int and type(write) is int else inp
        return cls(
            input_tokens=total,
            output_tokens=output_tokens or 0,
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_1h_tokens=ephemeral_1h_input_tokens or 0,
            web_searches=web_search_requests or 0,
        )

    @classmethod
    def from_gemini(
        cls,
        prompt_token_count: int | None,
        candidates_token_count: int | None,
        cached_content_token_count: int | None = None,
        thoughts_token_count: int | None = None,
        tool_use_prompt_token_count: int | None = None,
    ) -> TokenUsage:
        """Gemini counts cached content inside ``prompt_token_count`` and the tool-use prompt and
        the thoughts *apart*; both are billed (as input and as output), as genai-prices reads them."""
        parts = (prompt_token_count, candidates_token_count, cached_content_token_count, thoughts_token_count, tool_use_prompt_token_count)
        prompt, candidates, cached, thoughts, tool_prompt = (p or 0 for p in parts)
        if not all(type(v) is int for v in (prompt, candidates, thoughts, tool_prompt)):
            return cls(input_tokens=prompt, output_tokens=candidates, cache_read_tokens=cached, reasoning_tokens=thoughts)
        return cls(
            input_tokens=prompt + tool_prompt,
            output_tokens=candidates + thoughts,
            cache_read_tokens=cached,
            reasoning_tokens=thoughts,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def problem(self) -> str | None:
        """What makes these counts unusable (a part that is not a count, parts past their totals), or None."""
        for name in _TOKEN_NAMES:
            v = getattr(self, name)
            if type(v) is not int or not 0 <= v <= MAX_TOKENS:
                return f"{name}={v!r}"
        try:
            self.validate()
        except ValueError as exc:
            return str(exc)
        return None

    def validate(self) -> None:
        """Raise ``ValueError`` if the parts exceed their totals."""
        if (
            self.cache_read_tokens + self.cache_write_tokens <= self.input_tokens
            and self.reasoning_tokens <= self.output_tokens
            and 0 <= self.cache_write_1h_tokens <= self.cache_write_tokens
            and min(self.cache_read_tokens, self.reasoning_tokens, self.web_searches, self.file_searches) >= 0
        ):
            return  # the common case: valid
        for name in _TOKEN_NAMES:
            if getattr(self, name) < 0:
                raise ValueError(f"invalid usage: {name} is negative")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                f"invalid usage: cache tokens ({self.cache_read_tokens} read + {self.cache_write_tokens} written) "
                f"exceed input_tokens ({self.input_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"invalid usage: reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens ({self.output_tokens})"
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                f"invalid usage: cache_write_1h_tokens ({self.cache_write_1h_tokens}) exceed cache_write_tokens ({self.cache_write_tokens})"
            )


# Why a call is unpriced (runmeter.cost.unpriced_reason).
UNPRICED_NO_PRICE = "no_price"
UNPRICED_NO_USAGE = "no_usage"
UNPRICED_INVALID_USAGE = "invalid_usage"
# A token count past this is not a count (the store's columns are 64-bit; sums must fit too).
MAX_TOKENS = 10**15
_TOKEN_NAMES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cache_write_1h_tokens", "web_searches", "file_searches")


@quick_init
@dataclass(frozen=True, slots=True)
class Cost:
    """The price of one call, or why there is none."""

    total: Decimal | None
    input: Decimal | None
    output: Decimal | None
    source: str
    unpriced: bool = False
    estimated: bool = False
    model_id: str | None = None
    provider_id: str | None = None

    @property
    def usd(self) -> float | None:
        return None if self.total is None else float(self.total)

    def attributes(self) -> dict[str, Any]:
        """The span attributes of this cost: runmeter's and the upstream GenAI cost proposal's, or unpriced."""
        out: dict[str, Any] = {}
        self.write_attributes(out)
        return out

    def write_attributes(self, out: dict[str, Any]) -> None:
        """:meth:`attributes`, written into ``out`` (the instrumentation's per-call dict)."""
        write_cost_attributes(out, self.total, self.source)


def write_cost_attributes(out: dict[str, Any], total: Decimal | None, source: str) -> None:
    """The span attributes of a call's cost (:meth:`Cost.attributes`), from its total and source."""
    if total is None:
        out[A.RUNMETER_COST_UNPRICED] = True
        out[A.RUNMETER_COST_UNPRICED_REASON] = UNPRICED_NO_PRICE
        return
    usd = float(total)
    out[A.RUNMETER_COST_USD] = usd
    out[A.RUNMETER_COST_SOURCE] = source
    out[G.GEN_AI_USAGE_COST_AMOUNT] = usd
    out[G.GEN_AI_USAGE_COST_CURRENCY] = _CURRENCY
    out[G.GEN_AI_USAGE_COST_SOURCE] = source


# genai-prices usage keys runmeter knows how to fill from TokenUsage.
_USAGE_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",  # carved out of cache_write_tokens (more specific)
    "output_reasoning_tokens": "reasoning_tokens",
    "web_searches": "web_searches",  # a tool priced per use ($10 per 1,000 searches), in the total only
    "storage_searches": "file_searches",  # OpenAI's file search, $2.50 per 1,000
}

_Price = Union[Decimal, gp_types.TieredPrices]


@dataclass(frozen=True, slots=True)
class _Step:
    """One priced unit of a plan, as ``_program`` writes it."""

    field: str | None  # TokenUsage field, or None for a request-priced unit
    is_request: bool
    direction: str
    carve: tuple[int, ...]  # indices of more specific priced units carved out of this one
    # price per unit (price / per), and for tiered prices the (threshold, price per unit) tiers, highest
    # first. Token units are priced per 10^6, so these divisions are exact.
    unit: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()


@dataclass(frozen=True, slots=True)
class _Plan:
    model_id: str
    provider_id: str
    source: str
    # usage -> (total, input, output): the plan's steps made into one function of integer arithmetic (``_program``)
    run: Callable[[TokenUsage], tuple[Decimal, Decimal, Decimal]] = field(repr=False, compare=False)


# runmeter's money arithmetic (a price per unit, a plan's result, a GPU-hour price, a run's live
# spend) runs in this context, never the calling thread's: the agent's own code may have lowered
# its precision (at 6 digits a cost would be rounded to 6). 10**15 tokens at any price fit in 60.
MONEY_CONTEXT = Context(prec=60)


def _compile(model_price: gp_types.ModelPrice, model_id: str, provider_id: str, source: str) -> _Plan:
    """Turn a ModelPrice into the steps genai-prices' decomposition would take."""
    registry = _get_registry()
    resolved = gp_types._collect_resolved_model_prices(model_price, registry)
    # Most specific first, exactly as genai_prices.decompose.compute_leaf_values orders them.
    # Units runmeter never reports (audio, image...) always count 0 here, and so do
    # their more specific units (they share the unreported dimension): they are left out.
    units = sorted(
        (u for u, _ in resolved if u.usage_key in _USAGE_FIELDS),
        key=lambda u: (-len(u.dimensions), u.usage_key),
    )
    index = {u.usage_key: i for i, u in enumerate(units)}
    prices = {u.usage_key: p for u, p in resolved}
    steps: list[_Step] = []
    for u in units:
        carve = tuple(
            index[d.usage_key]
            for d in units
            if d is not u and u.dimensions.items() <= d.dimensions.items()
        )
        steps.append(_step(_USAGE_FIELDS[u.usage_key], False, prices[u.usage_key], u.per, u.dimensions.get("direction", ""), carve))
    for u, p in resolved:
        if u.usage_key == "requests":
            steps.append(_step(None, True, p, u.per, u.dimensions.get("direction", ""), ()))
    return _Plan(model_id, provider_id, source, _program(tuple(steps), model_id))


def _step(field: str | None, is_request: bool, price: _Price, per: int, direction: str, carve: tuple[int, ...]) -> _Step:
    per_unit = MONEY_CONTEXT.divide  # exact: per is a power of ten
    if isinstance(price, gp_types.TieredPrices):
        tiers = tuple((t.start, per_unit(t.price, per)) for t in reversed(price.tiers))
        return _Step(field, is_request, direction, carve, per_unit(price.base, per), tiers)
    return _Step(field, is_request, direction, carve, per_unit(price, per))


def _scaled(price: Decimal, scale: int) -> int:
    """``price * 10**scale`` as an integer, exactly (``scale`` is at least the price's decimal places)."""
    sign, digits, exponent = price.as_tuple()
    value = int("".join(map(str, digits)) or "0") * 10 ** (int(exponent) + scale)
    return -value if sign else value


def _program(steps: tuple[_Step, ...], model_id: str) -> Callable[[TokenUsage], tuple[Decimal, Decimal, Decimal]]:
    """The steps as one straight-line function: each unit's count (its field less the more specific
    units carved out of it), times its price per unit as an integer at one scale for the whole
    plan, summed by direction in integers; three ``Decimal`` at the end. The same sums as the steps
    taken one by one in ``Decimal`` (exact: prices per unit are finite decimals and the integers do
    not round), in one call and a few integer operations. The code is made from the plan's numbers and
    ``TokenUsage``'s field names only."""
    rates = [s.unit for s in steps] + [r for s in steps for _, r in s.tiers]
    if not all(r.is_finite() for r in rates):
        raise ValueError(f"a price of {model_id} is not a finite number")
    scale = max([0, *(-int(r.as_tuple().exponent) for r in rates)])
    lines = ["def run(u):"]
    if any(s.tiers for s in steps):
        lines.append(" total_input = u.input_tokens")
    terms: dict[str, list[str]] = {"input": [], "output": [], "": []}
    for i, s in enumerate(steps):
        if s.is_request:
            count = "1"
        else:
            carved = "".join(f" - c{j}" for j in s.carve)
            lines.append(f" c{i} = u.{s.field}{carved}")
            if carved:
                lines.append(f" if c{i} < 0: raise ValueError(_negative)")
            count = f"c{i}"
        rate = str(_scaled(s.unit, scale))
        for start, tier_rate in reversed(s.tiers):  # lowest first, so the highest threshold passed is outermost
            rate = f"({_scaled(tier_rate, scale)} if total_input > {int(start)} else {rate})"
        terms[s.direction if s.direction in ("input", "output") else ""].append(f"{count} * {rate}")
    lines.append(f" inp = {' + '.join(terms['input']) or '0'}")
    lines.append(f" out = {' + '.join(terms['output']) or '0'}")
    lines.append(f" total = inp + out{''.join(' + ' + t for t in terms[''])}")
    lines.append(" return times(D(total), q), times(D(inp), q), times(D(out), q)")
    namespace: dict[str, Any] = {
        "D": Decimal, "q": Decimal(f"1E-{scale}"), "times": MONEY_CONTEXT.multiply,
        "_negative": f"invalid usage for {model_id}: more specific token counts exceed their total",
    }
    exec("\n".join(lines), namespace)  # noqa: S102 - made from integers and TokenUsage's field names only
    run: Callable[[TokenUsage], tuple[Decimal, Decimal, Decimal]] = namespace["run"]
    return run


def _has_time_of_day(model: gp_types.ModelInfo) -> bool:
    if isinstance(model.prices, gp_types.ModelPrice):
        return False
    return any(isinstance(c.constraint, gp_types.TimeOfDateConstraint) for c in model.prices)


class PriceBook:
    """Prices usage records; resolves each (provider, model) once and caches it.

    Thread-safe. ``overrides`` (from ``runmeter.toml``) win over genai-prices:
    per-token prices, aliases and GPU-hour local models.
    """

    def __init__(self, overrides: PriceOverrides | None = None) -> None:
        self._overrides = overrides
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")
        # (provider, model) -> ModelInfo+provider, or None when unknown
        self._models: dict[tuple[str | None, str], tuple[gp_types.Provider, gp_types.ModelInfo] | None] = {}
        self._plans: dict[tuple[Any, ...], _Plan] = {}  # by (provider, model, UTC day as an ordinal, service tier)
        self._by_price: IdentityCache[_Plan] = IdentityCache(_MAX_CACHED)  # a ModelPrice -> its compiled plan
        self._today_date = 0
        self._today_until = 0.0

    @property
    def overrides(self) -> PriceOverrides | None:
        return self._overrides

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its overrides (the collector's worker processes build their own caches)."""
        return PriceBook, (self._overrides,)

    def price(
        self,
        provider: str | None,
        model: str | None,
        usage: TokenUsage,
        *,
        when: datetime | None = None,
        at_ns: int | None = None,
        duration_s: float | None = None,
        estimated: bool = False,
        service_tier: str | None = None,
    ) -> Cost:
        """Price ``usage`` for ``model`` (``provider`` helps find it; ``None`` guesses).

        ``service_tier``: the tier the response reports (OpenAI's ``priority``, ``flex``...); it
        selects genai-prices' price variant for that tier where the model has one.

        ``when`` selects historic prices (default now), or ``at_ns`` (nanoseconds since the epoch, as
        span times are, no datetime needed); ``duration_s`` is the
        call's wall-clock time, used by models priced per GPU-hour. Raises
        ``ValueError`` for usage whose parts exceed their totals.
        """
        parts = self.price_parts(provider, model, usage, when=when, at_ns=at_ns, duration_s=duration_s, service_tier=service_tier)
        if parts is None:
            return Cost(None, None, None, "", unpriced=True, estimated=estimated)
        total, inp, out, source, model_id, provider_id = parts
        return Cost(total, inp, out, source, estimated=estimated, model_id=model_id, provider_id=provider_id)

    def price_parts(
        self,
        provider: str | None,
        model: str | None,
        usage: TokenUsage,
        *,
        when: datetime | None = None,
        at_ns: int | None = None,
        duration_s: float | None = None,
        service_tier: str | None = None,
    ) -> tuple[Decimal, Decimal, Decimal, str, str | None, str | None] | None:
        """:meth:`price` as the parts of its :class:`Cost` - total, input, output, source, model id,
        provider id - or None when unpriced, with no ``Cost`` made: the collector prices every LLM
        span it reads, and a frozen dataclass of eight fields costs as much to make as the pricing."""
        usage.validate()
        if not model:
            return None
        ov = self._overrides
        if ov is not None:
            model = ov.aliases.get(model, model)
            local = ov.local_cost(model, usage, duration_s)
            if local is not None:
                return local, local, _ZERO, ov.gpu_source, model, provider
        plan = self._plan(provider, model, when, at_ns, service_tier or None)
        if plan is None:
            return None
        total, inp, out = plan.run(usage)
        return total, inp, out, plan.source, plan.model_id, plan.provider_id

    def _today(self) -> int:
        """Today's UTC date as an ordinal, recomputed only when the clock passes midnight (the hot path prices "now")."""
        now = time.time()
        if now >= self._today_until:
            today = datetime.fromtimestamp(now, timezone.utc).date()
            midnight = datetime(today.year, today.month, today.day, tzinfo=timezone.utc) + timedelta(days=1)
            self._today_date, self._today_until = today.toordinal(), midnight.timestamp()
        return self._today_date

    def _plan(self, provider: str | None, model: str, when: datetime | None, at_ns: int | None = None,
              tier: str | None = None) -> _Plan | None:
        # Plans are cached by UTC day, as a date ordinal: a span's nanoseconds give it with one division.
        if at_ns is not None:
            day = at_ns // _NS_PER_DAY + _EPOCH_ORDINAL
        elif when is None:
            day = self._today()
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)  # naive means UTC, as in genai-prices
            day = when.astimezone(timezone.utc).date().toordinal()
        key = (provider, model, day, tier)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        if when is None:
            # From the integer, not at_ns / 1e9: a float rounds the last nanoseconds of a day into the next.
            when = (
                datetime.fromtimestamp(at_ns // 10**9, timezone.utc).replace(microsecond=at_ns % 10**9 // 1000)
                if at_ns is not None else datetime.now(timezone.utc)
            )
        with self._lock:
            return self._resolve(provider, model, when, key, tier)

    def _resolve(self, provider: str | None, model: str, when: datetime, key: tuple[Any, ...], tier: str | None) -> _Plan | None:
        if len(self._plans) >= _MAX_CACHED:
            self._plans.clear()  # bounded whatever model names arrive; rebuilt on demand
        ov = self._overrides
        if ov is not None and (custom := ov.model_price(model)) is not None:
            plan = _compile(custom, model, provider or "custom", ov.token_source)
            self._plans[key] = plan
            return plan
        found = self._lookup(provider, model)
        if found is None:
            return None
        gp_provider, info = found
        model_price = info.get_prices(when, {"service_tier": tier} if tier else None)
        plan = self._by_price.get(model_price) or self._by_price.put(
            model_price, _compile(model_price, info.id, gp_provider.id, GENAI_PRICES_SOURCE))
        # Start-date prices change at most daily (UTC), so plans are cached by day;
        # time-of-day prices (off-peak rates) change within a day and are not.
        if not _has_time_of_day(info):
            self._plans[key] = plan
        return plan

    def _lookup(self, provider: str | None, model: str) -> tuple[gp_types.Provider, gp_types.ModelInfo] | None:
        mkey = (provider, model)
        if mkey in self._models:
            return self._models[mkey]
        snapshot = data_snapshot.get_snapshot()
        found: tuple[gp_types.Provider, gp_types.ModelInfo] | None
        try:
            found = snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            found = None
            if provider is not None:
                # An unknown provider id (a self-hosted gateway, say) may still serve a known model.
                try:
                    found = snapshot.find_provider_model(model, None, None, None)
                except LookupError:
                    found = None
        if found is None and provider in ("aws", "aws.bedrock") and "." not in model.split("-", 1)[0]:
            # OpenLLMetry's Bedrock spans name the model without its vendor (llama3-3-70b-instruct-v1:0).
            for vendor in _BEDROCK_VENDORS:
                found = self._lookup(provider, f"{vendor}.{model}")
                if found is not None:
                    break
        if found is None and "/models/" in model:
            # A resource name (Fireworks' accounts/fireworks/models/<id>, Vertex's .../models/<id>): its model id.
            found = self._lookup(provider, model.rsplit("/models/", 1)[-1])
        elif found is None and "/" in model.strip("/"):
            # A gateway's route (LiteLLM's and most proxies' "openai/gpt-4o-mini", "anthropic/claude-..."),
            # when the provider does not list it under that name: the model it routes to.
            found = self._lookup(provider, model.split("/", 1)[1])
        if found is None and model != model.strip():
            found = self._lookup(provider, model.strip())  # a name padded by hand or by a template
        if found is None and provider not in ("aws", "aws.bedrock") and _bedrock_shaped(model):
            # A Bedrock id under no provider or a framework's name for itself (Strands Agents writes
            # gen_ai.system "strands-agents" beside us.anthropic.claude-...): Bedrock's price.
            found = self._lookup("aws", model)
        if len(self._models) >= _MAX_CACHED:
            self._models.clear()
        self._models[mkey] = found
        return found

    def describe(self, provider: str | None, model: str) -> tuple[str, str, gp_types.ModelPrice | dict[str, Decimal]] | None:
        """(model id, source, price) for ``runmeter prices``; None when unknown."""
        ov = self._overrides
        if ov is not None:
            model = ov.aliases.get(model, model)
            if (gpu := ov.local.get(model)) is not None:
                return model, ov.gpu_source, {"gpu_hour_usd": gpu.gpu_hour_usd * gpu.gpus}
            if (custom := ov.model_price(model)) is not None:
                return model, ov.token_source, custom
        found = self._lookup(provider, model)
        if found is None:
            return None
        return found[1].id, GENAI_PRICES_SOURCE, found[1].get_prices(datetime.now(timezone.utc))
