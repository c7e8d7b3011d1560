"""``make demo``: the main job on the embedded store.

Until the reports land, the demo prices a few calls the way the real demo's
simulated agents will make them, and says what the full demo will do.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from runmeter.config import load_settings
from runmeter.processor import PriceBook, TokenUsage

_CALLS = [
    ("openai", "gpt-5.5", TokenUsage.from_openai(12_400, 900, cached_tokens=8_192, reasoning_tokens=320)),
    ("openai", "gpt-4o-mini", TokenUsage.from_openai(3_100, 450, cached_tokens=1_024)),
    ("anthropic", "claude-haiku-4-5", TokenUsage.from_anthropic(2_000, 600, cache_read_input_tokens=6_000, cache_creation_input_tokens=1_500)),
    ("anthropic", "claude-opus-4-7", TokenUsage.from_anthropic(4_000, 1_200, cache_read_input_tokens=20_000)),
    ("local", "my-private-llama", TokenUsage(5_000, 700)),
]


def main() -> None:
    console = Console()
    settings = load_settings()
    book = PriceBook(settings.pricing)
    table = Table(title="runmeter demo - one call per model, priced by PriceBook")
    for col in ("provider", "model", "input", "cache read", "cache write", "output", "USD", "source"):
        table.add_column(col, justify="right" if col not in ("provider", "model", "source") else "left")
    for provider, model, usage in _CALLS:
        cost = book.price(provider, model, usage, duration_s=3.2)
        usd = "unpriced" if cost.unpriced else f"${cost.usd:.6f}"
        table.add_row(
            provider, model, f"{usage.input_tokens:,}", f"{usage.cache_read_tokens:,}",
            f"{usage.cache_write_tokens:,}", f"{usage.output_tokens:,}", usd, cost.source or "-",
        )
    console.print(table)
    console.print(
        "The full demo (issue: reports) starts a local LLM simulator on 127.0.0.1, runs the example "
        "agents through `opentelemetry-instrument` into the embedded store, and prints "
        "`runmeter report` and `runmeter compare`."
    )


if __name__ == "__main__":
    main()
