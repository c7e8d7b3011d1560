"""PriceBook: same numbers as genai-prices, per-provider token semantics, overrides."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from runmeter.config import load_settings
from runmeter.processor import ConfigError, PriceBook, PriceOverrides, TokenUsage

MODELS = [
    ("openai", "gpt-5.5"),
    ("openai", "gpt-5.4"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-opus-4-7"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-haiku-4-5-20251001"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.5-flash"),
    (None, "gpt-5.5"),
]
USAGES = [
    TokenUsage(0, 0),
    TokenUsage(57, 21, cache_read_tokens=32),
    TokenUsage(1_000, 200, reasoning_tokens=150),
    TokenUsage(12_000, 800, cache_read_tokens=8_000, cache_write_tokens=2_000),
    TokenUsage(150_000, 4_000, cache_write_tokens=150_000),
    TokenUsage(250_000, 9_000, cache_read_tokens=100_000),  # under the 272k tier
    TokenUsage(300_000, 12_000, cache_read_tokens=200_000, reasoning_tokens=2_000),  # over both tiers
    TokenUsage(1_000_000, 500_000),
]
WHEN = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_same_numbers_as_genai_prices(provider: str | None, model: str) -> None:
    book = PriceBook()
    for usage in USAGES:
        expected = calc_price(
            Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_reasoning_tokens=usage.reasoning_tokens,
            ),
            model,
            provider_id=provider,
            genai_request_timestamp=WHEN,
        )
        got = book.price(provider, model, usage, when=WHEN)
        assert got.total == expected.total_price, (model, usage)
        assert got.input == expected.input_price
        assert got.output == expected.output_price
        assert got.model_id == expected.model.id
        assert got.source == "genai-prices@0.2.3"
        assert not got.unpriced


# Every unit runmeter prices, at both sides of the common tier thresholds (200k, 272k input
# tokens), and counts as large as a count may be (MAX_TOKENS): where Decimal would round, and
# integers at one scale would not, they would disagree.
EVERY_UNIT = [
    TokenUsage(0, 0),
    TokenUsage(57, 21, cache_read_tokens=32),
    TokenUsage(200_000, 1_000, cache_read_tokens=10_000, cache_write_tokens=5_000, cache_write_1h_tokens=2_000),
    TokenUsage(200_001, 1_000, cache_read_tokens=10_000, cache_write_tokens=5_000, cache_write_1h_tokens=2_000),
    TokenUsage(272_000, 12_000, reasoning_tokens=2_000, web_searches=3),
    TokenUsage(300_000, 12_000, cache_read_tokens=200_000, cache_write_tokens=50_000, reasoning_tokens=2_000,
               cache_write_1h_tokens=20_000, web_searches=3, file_searches=2),
    TokenUsage(10**15, 10**15, 10**14, 10**14, 10**13, 10**12, 10**6, 10**6),
]


def test_every_model_genai_prices_knows_is_priced_to_its_numbers() -> None:
    """The compiled plans (``_program``: integer arithmetic, one function a plan) against
    ``calc_price`` for every model of every provider in the installed snapshot, every unit set."""
    from genai_prices import data_snapshot

    from runmeter.processor.pricing import _USAGE_FIELDS

    book, compared = PriceBook(), 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            for usage in EVERY_UNIT:
                try:
                    expected = calc_price(Usage(**{key: getattr(usage, name) for key, name in _USAGE_FIELDS.items()}),
                                          model.id, provider_id=provider.id, genai_request_timestamp=WHEN)
                except LookupError:
                    continue  # an id genai-prices' own lookup does not find by itself (a regional alias)
                got = book.price(provider.id, model.id, usage, when=WHEN)
                assert (got.total, got.input, got.output) == (expected.total_price, expected.input_price, expected.output_price), (
                    provider.id, model.id, usage)
                compared += 1
    assert compared > 5_000  # the snapshot's ~1,300 models, not a handful


def test_the_agents_own_decimal_context_does_not_round_a_cost() -> None:
    """An agent's code may lower the thread's decimal precision (finance code does): a cost stays exact."""
    import decimal

    usage = TokenUsage(123_457, 98_765, cache_read_tokens=11_111)
    # gpt-5.4: 112,346 x $2.50/M + 11,111 x $0.25/M + 98,765 x $15/M
    expected = Decimal("0.280865") + Decimal("0.00277775") + Decimal("1.481475")
    with decimal.localcontext(decimal.Context(prec=3)):
        got = PriceBook().price("openai", "gpt-5.4", usage, when=WHEN)
    assert got.total == expected == Decimal("1.76511775")


def test_an_override_with_many_digits_is_exact_under_the_agents_decimal_context(tmp_path: Path) -> None:
    """Prices of one's own (a fine-tune's, a GPU's) are compiled and computed on the agent's thread too."""
    import decimal

    path = tmp_path / "runmeter.toml"
    path.write_text('[pricing.models."ft"]\ninput_mtok = 1.234567\noutput_mtok = 7.654321\n\n'
                    '[pricing.local."gpu"]\ngpu_hour_usd = 2.345678\n')
    with decimal.localcontext(decimal.Context(prec=3)):
        book = PriceBook(load_settings(path, env={}).pricing)
        tokens = book.price(None, "ft", TokenUsage(1_000_001, 333_333)).total
        gpu = book.price(None, "gpu", TokenUsage(10, 10), duration_s=36.0).total
    # 1,000,001 x 1.234567/M + 333,333 x 7.654321/M; 36 s = 0.01 h of $2.345678
    assert tokens == Decimal("1.234568234567") + Decimal("2.551437781893")  # 1234567 x 1000001, 7654321 x 333333
    assert gpu == Decimal("0.02345678")


def test_worked_example_gpt_5_5_with_cache_read() -> None:
    # 25 uncached x $5/M + 32 cached x $0.50/M + 21 output x $30/M
    usage = TokenUsage.from_openai(prompt_tokens=57, completion_tokens=21, cached_tokens=32)
    assert PriceBook().price("openai", "gpt-5.5", usage).total == Decimal("0.000771")


def test_openai_cached_tokens_are_inside_prompt_tokens() -> None:
    usage = TokenUsage.from_openai(prompt_tokens=100_000, completion_tokens=10_000, cached_tokens=60_000, reasoning_tokens=4_000)
    assert usage.input_tokens == 100_000 and usage.cache_read_tokens == 60_000
    # gpt-5.4: 40,000 x $2.50/M = 0.10; 60,000 x $0.25/M = 0.015; 10,000 x $15/M = 0.15 (reasoning is output)
    cost = PriceBook().price("openai", "gpt-5.4", usage)
    assert cost.total == Decimal("0.265")


def test_anthropic_cache_tokens_are_added_to_input() -> None:
    usage = TokenUsage.from_anthropic(
        input_tokens=10_000, output_tokens=2_000, cache_read_input_tokens=50_000, cache_creation_input_tokens=8_000
    )
    assert usage.input_tokens == 68_000
    # claude-opus-4-7: 10,000 x $5/M = 0.05; 50,000 x $0.50/M = 0.025; 8,000 x $6.25/M = 0.05; 2,000 x $25/M = 0.05
    assert PriceBook().price("anthropic", "claude-opus-4-7", usage).total == Decimal("0.175")


def test_tiered_price_applies_to_all_tokens_past_the_threshold() -> None:
    below = TokenUsage(272_000, 10_000)
    above = TokenUsage(300_000, 10_000)
    book = PriceBook()
    # 272,000 x $5/M = 1.36 + 10,000 x $30/M = 0.30
    assert book.price("openai", "gpt-5.5", below).total == Decimal("1.66")
    # 300,000 x $10/M = 3.00 + 10,000 x $45/M = 0.45
    assert book.price("openai", "gpt-5.5", above).total == Decimal("3.45")


def test_million_tokens_on_claude_opus() -> None:
    # 1,000,000 x $5/M + 500,000 x $25/M = 5 + 12.5
    assert PriceBook().price("anthropic", "claude-opus-4-7", TokenUsage(1_000_000, 500_000)).total == Decimal("17.5")


def test_unknown_model_is_unpriced_never_zero() -> None:
    cost = PriceBook().price("openai", "my-secret-model-9000", TokenUsage(1_000, 10))
    assert cost.unpriced
    assert cost.total is None and cost.usd is None


def test_unknown_provider_still_finds_a_known_model() -> None:
    cost = PriceBook().price("my-gateway", "gpt-4o-mini", TokenUsage(1_000_000, 0))
    assert cost.total == Decimal("0.15")


def test_a_gateways_route_and_a_padded_name_are_priced_as_the_model_they_name() -> None:
    """LiteLLM and most gateways name a model by its route, "openai/gpt-4o-mini": gpt-4o-mini at
    $0.15/M in and $0.60/M out, Claude Sonnet 4.5 at $3/M and $15/M. A provider that lists the
    route itself (OpenRouter) keeps its own entry; an unknown route stays unpriced, never zero."""
    book = PriceBook()
    usage = TokenUsage(1_000, 100)
    mini = Decimal("0.00015") + Decimal("0.00006")
    assert book.price("openai", "openai/gpt-4o-mini", usage).total == mini
    assert book.price("openai", " gpt-4o-mini\n", usage).total == mini
    assert book.price(None, "anthropic/claude-sonnet-4-5", usage).total == Decimal("0.003") + Decimal("0.0015")
    routed = book.price("openrouter", "openai/gpt-4o-mini", usage)
    assert routed.provider_id == "openrouter" and routed.model_id == "openai/gpt-4o-mini"
    assert book.price("openai", "acme/no-such-model-9000", usage).unpriced
    assert book.price("openai", "/", usage).unpriced and book.price("openai", "a//", usage).unpriced


def test_a_cache_write_kept_for_an_hour_is_priced_at_its_own_rate() -> None:
    """claude-haiku-4-5: $1/M in, $1.25/M for a 5-minute cache write, $2/M for a 1-hour one, $5/M
    out. 4,000 in (1,000 fresh, 3,000 written, 2,000 of them for an hour), 500 out:
    $0.001 + $0.00125 + $0.004 + $0.0025 = $0.00875 ($0.00725 with every write at the 5-minute rate)."""
    book = PriceBook()
    usage = TokenUsage(4_000, 500, cache_write_tokens=3_000, cache_write_1h_tokens=2_000)
    assert book.price("anthropic", "claude-haiku-4-5", usage).total == Decimal("0.00875")
    assert book.price("anthropic", "claude-haiku-4-5", TokenUsage(4_000, 500, cache_write_tokens=3_000)).total == Decimal("0.00725")
    assert TokenUsage.from_anthropic(1_000, 500, 0, 3_000, 2_000) == usage
    with pytest.raises(ValueError, match="cache_write_1h_tokens"):
        book.price("anthropic", "claude-haiku-4-5", TokenUsage(4_000, 500, cache_write_tokens=1_000, cache_write_1h_tokens=2_000))


def test_web_searches_are_priced_per_search_beside_the_tokens() -> None:
    """genai-prices lists web searches at $10 per 1,000 for Claude and OpenAI's models, $35 for
    Gemini 2.5's grounding. claude-haiku-4-5: 1,000 in x $1/M + 100 out x $5/M + 3 x $0.01 =
    $0.0315; the searches are in the total, not in the input or output part."""
    book = PriceBook()
    cost = book.price("anthropic", "claude-haiku-4-5", TokenUsage(1_000, 100, web_searches=3))
    assert (cost.total, cost.input, cost.output) == (Decimal("0.0315"), Decimal("0.001"), Decimal("0.0005"))
    assert book.price("google", "gemini-2.5-flash", TokenUsage(0, 0, web_searches=2)).total == Decimal("0.07")
    assert TokenUsage.from_anthropic(1_000, 100, web_search_requests=3) == TokenUsage(1_000, 100, web_searches=3)
    # OpenAI's file search: $2.50 per 1,000 (genai-prices' storage_searches); gpt-4o-mini, 4 of them
    assert book.price("openai", "gpt-4o-mini", TokenUsage(0, 0, file_searches=4)).total == Decimal("0.01")
    with pytest.raises(ValueError, match="web_searches is negative"):
        book.price("anthropic", "claude-haiku-4-5", TokenUsage(1_000, 100, web_searches=-1))


def test_invalid_usage_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="exceed input_tokens"):
        PriceBook().price("openai", "gpt-5.5", TokenUsage(10, 0, cache_read_tokens=20))


def test_resolution_is_cached() -> None:
    book = PriceBook()
    book.price("openai", "gpt-5.5", TokenUsage(1, 1))
    plans = dict(book._plans)
    book.price("openai", "gpt-5.5", TokenUsage(2, 2))
    assert book._plans == plans and len(plans) == 1


# --- overrides --------------------------------------------------------------

CONFIG = """\
[pricing.models."acme-ft"]
input_mtok = 5.00
output_mtok = 30.00
cache_read_mtok = 0.50

[pricing.aliases]
"prod-chat" = "gpt-4o-mini"
"box" = "llama-local"

[pricing.local."llama-local"]
gpu_hour_usd = 2.40
gpus = 2

[pricing.local."llama-shared"]
gpu_hour_usd = 3.60
method = "throughput"
tokens_per_second = 1000
"""


@pytest.fixture
def book(tmp_path: Path) -> PriceBook:
    path = tmp_path / "runmeter.toml"
    path.write_text(CONFIG)
    return PriceBook(load_settings(path, env={}).pricing)


def test_per_token_override(book: PriceBook) -> None:
    # 1,000,000 input x $5/M + 500,000 output x $30/M = $20.00
    cost = book.price("openai", "acme-ft", TokenUsage(1_000_000, 500_000))
    assert cost.total == Decimal("20")
    assert cost.source == "override:runmeter.toml"
    # with 400,000 of the input cached: 600,000 x 5 + 400,000 x 0.5 = 3.2, + 15 output
    assert book.price("openai", "acme-ft", TokenUsage(1_000_000, 500_000, cache_read_tokens=400_000)).total == Decimal("18.2")


def test_alias_prices_as_its_target(book: PriceBook) -> None:
    # gpt-4o-mini: 2,000,000 x $0.15/M + 1,000,000 x $0.60/M
    cost = book.price("azure", "prod-chat", TokenUsage(2_000_000, 1_000_000))
    assert cost.total == Decimal("0.9")
    assert cost.model_id == "gpt-4o-mini"


def test_gpu_hour_by_duration(book: PriceBook) -> None:
    # 2 GPUs x $2.40/h = $4.80/h; 90 s = 0.025 h -> $0.12
    cost = book.price("local", "llama-local", TokenUsage(5_000, 700), duration_s=90.0)
    assert cost.total == Decimal("0.12")
    assert cost.source == "gpu-hour:runmeter.toml"
    # an alias to a local model prices the same way
    assert book.price("local", "box", TokenUsage(5_000, 700), duration_s=90.0).total == Decimal("0.12")


def test_gpu_hour_by_throughput(book: PriceBook) -> None:
    # $3.60/h at 1,000 tok/s = 3,600,000 tok/h -> $0.000001/token; 9,000 tokens -> $0.009
    cost = book.price("local", "llama-shared", TokenUsage(8_000, 1_000), duration_s=123.0)
    assert cost.total == Decimal("0.009")


def test_local_model_by_duration_needs_a_duration(book: PriceBook) -> None:
    with pytest.raises(ValueError, match="priced by duration"):
        book.price("local", "llama-local", TokenUsage(1, 1))


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ('[pricing.models."m"]\ninput_mtok = "cheap"\noutput_mtok = 1\n', 2, "pricing.models.m.input_mtok", "decimal"),
        ('[pricing.models."m"]\ninput_mtok = 1\n', 1, "pricing.models.m.output_mtok", "Field required"),
        ('\n\n[pricing.local."l"]\ngpu_hour_usd = 1\nmethod = "throughput"\n', 3, "pricing.local.l", "tokens_per_second"),
        ('[pricing.local."l"]\ngpu_hour_usd = -1\n', 2, "pricing.local.l.gpu_hour_usd", "greater than 0"),
        ('[pricing]\nmodels = 3\n', 2, "pricing.models", "dictionary"),
        ('[pricing.models."m"]\ninput_mtok = 1\noutput_mtok = 1\nbogus = 2\n', 4, "pricing.models.m.bogus", "Extra inputs"),
        ('[pricing.models."m"\ninput_mtok = 1\n', 1, None, "not valid TOML"),
    ],
)
def test_malformed_override_file_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str | None, message: str
) -> None:
    path = tmp_path / "runmeter.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.key == key
    assert message in str(err)
    assert str(path) in str(err)


def test_pyproject_tool_table(tmp_path: Path) -> None:
    text = '[project]\nname = "x"\n\n[tool.runmeter.pricing.models."acme"]\ninput_mtok = 1\noutput_mtok = "x"\n'
    (tmp_path / "pyproject.toml").write_text(text)
    from runmeter.config import find_config_file

    found = find_config_file(env={}, cwd=tmp_path)
    assert found == (tmp_path / "pyproject.toml", ("tool", "runmeter"))
    with pytest.raises(ConfigError) as info:
        load_settings(found[0], env={})
    assert info.value.line == 6
    assert info.value.key == "tool.runmeter.pricing.models.acme.output_mtok"


def test_overrides_object_default_is_empty() -> None:
    assert PriceOverrides().models == {} and PriceBook(PriceOverrides()).price("openai", "gpt-5.5", TokenUsage(1, 1)).total



def test_span_nanoseconds_select_the_price_of_that_utc_day() -> None:
    # avian's deepseek/deepseek-v4-flash: $0.0805 per M input tokens, $0.14 from 2026-10-18 (genai-prices data).
    book = PriceBook()
    usage = TokenUsage(1_000_000, 0)
    midnight_ns = int(datetime(2026, 10, 18, tzinfo=timezone.utc).timestamp()) * 10**9
    before = book.price("avian", "deepseek/deepseek-v4-flash", usage, at_ns=midnight_ns - 1)
    after = book.price("avian", "deepseek/deepseek-v4-flash", usage, at_ns=midnight_ns)
    assert (before.total, after.total) == (Decimal("0.0805"), Decimal("0.14"))
    # The same days given as datetimes, from a book whose cache holds the nanosecond lookups.
    assert book.price("avian", "deepseek/deepseek-v4-flash", usage, when=datetime(2026, 10, 17, 23, 59, tzinfo=timezone.utc)).total == Decimal("0.0805")
    assert book.price("avian", "deepseek/deepseek-v4-flash", usage, when=datetime(2026, 10, 18, 0, 1, tzinfo=timezone.utc)).total == Decimal("0.14")


def test_time_of_day_prices_follow_the_calls_start_within_one_day() -> None:
    """DeepSeek's deepseek-chat: $0.27/M in, $1.10/M out from 00:30 to 16:30 UTC, half of that
    the rest of the day (genai-prices data). One book prices both windows of one day, each time
    (a day's plan is not cached for a model whose price moves within it)."""
    book = PriceBook()
    usage = TokenUsage(1_000_000, 1_000_000)
    day = datetime(2026, 11, 26, tzinfo=timezone.utc)

    def at(hour: int, minute: int) -> Decimal | None:
        return book.price("deepseek", "deepseek-chat", usage, at_ns=int(day.replace(hour=hour, minute=minute).timestamp()) * 10**9).total

    assert at(0, 29) == Decimal("0.685")
    assert at(0, 30) == Decimal("1.37")
    assert at(16, 29) == Decimal("1.37")
    assert at(16, 30) == Decimal("0.685")
    assert at(9, 0) == Decimal("1.37")


def test_bedrock_ids_without_their_vendor_are_priced() -> None:
    """OpenLLMetry's Bedrock spans drop the vendor prefix of the model id."""
    from runmeter.processor import PriceBook, TokenUsage

    book = PriceBook()
    usage = TokenUsage(input_tokens=1_000, output_tokens=200)
    full = book.price("aws.bedrock", "meta.llama3-3-70b-instruct-v1:0", usage).total
    assert book.price("aws.bedrock", "llama3-3-70b-instruct-v1:0", usage).total == full
    assert float(full) == pytest.approx(1_200 * 0.72e-6)  # Llama 3.3 70B: $0.72/M in and out
    assert book.price("aws.bedrock", "no-such-model-v9:0", usage).unpriced
