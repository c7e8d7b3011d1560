"""PriceBook vs genai_prices.calc_price on the same usages, in one run.

Prints the median time per call of each, and the ratio. Asserts that every
result is identical (Decimal equality), so speed never comes from a shortcut.
Target: PriceBook >= 10x faster.

    .venv/bin/python benchmarks/pricing.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from genai_prices import Usage, calc_price

from runmeter.processor import PriceBook, TokenUsage

MODELS = [
    ("openai", "gpt-5.5"),
    ("openai", "gpt-5.4"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-opus-4-7"),
    ("anthropic", "claude-haiku-4-5"),
    ("google", "gemini-2.5-pro"),
]


def workload(n: int, seed: int = 7) -> list[tuple[str, str, TokenUsage]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        provider, model = rng.choice(MODELS)
        inp = rng.choice([rng.randint(50, 2_000), rng.randint(2_000, 60_000), rng.randint(200_000, 400_000)])
        cached = rng.randint(0, inp // 2)
        written = rng.randint(0, (inp - cached) // 4) if provider == "anthropic" else 0
        out_tokens = rng.randint(10, 4_000)
        out.append((provider, model, TokenUsage(inp, out_tokens, cached, written, rng.randint(0, out_tokens // 2))))
    return out


def run_calc_price(calls: list[tuple[str, str, TokenUsage]]) -> list[object]:
    return [
        calc_price(
            Usage(
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cache_read_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens,
                output_reasoning_tokens=u.reasoning_tokens,
            ),
            model,
            provider_id=provider,
        ).total_price
        for provider, model, u in calls
    ]


def run_pricebook(book: PriceBook, calls: list[tuple[str, str, TokenUsage]]) -> list[object]:
    return [book.price(provider, model, u).total for provider, model, u in calls]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    calls = workload(args.calls)
    book = PriceBook()
    expected = run_calc_price(calls)  # warm both caches once
    got = run_pricebook(book, calls)
    assert got == expected, "PriceBook and calc_price disagree"

    t_gp, t_pb = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        a = run_calc_price(calls)
        t1 = time.perf_counter()
        b = run_pricebook(book, calls)
        t2 = time.perf_counter()
        assert a == b == expected
        t_gp.append((t1 - t0) / len(calls))
        t_pb.append((t2 - t1) / len(calls))
    gp, pb = statistics.median(t_gp), statistics.median(t_pb)
    print(f"calls per round: {len(calls)}, rounds: {args.rounds}, results identical: yes")
    print(f"genai_prices.calc_price  median {gp * 1e6:8.2f} us/call")
    print(f"PriceBook.price          median {pb * 1e6:8.2f} us/call")
    print(f"ratio (calc_price / PriceBook): {gp / pb:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
