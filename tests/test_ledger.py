"""RunLedger, Budget and LoopDetector as pure classes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from runmeter.processor import Breach, Budget, BudgetExceeded, LoopDetector, RunLedger, TokenUsage


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_budget_validates_arguments() -> None:
    with pytest.raises(ValueError, match="max_cost_usd"):
        Budget(max_cost_usd=-1)
    with pytest.raises(ValueError, match="whole number"):
        Budget(max_llm_calls=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action"):
        Budget(action="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allowed_tools"):
        Budget(allowed_tools="read_file")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Budget(max_wall_clock_s=float("inf"))


def test_budget_round_trips_through_span_attributes() -> None:
    b = Budget(max_cost_usd=0.5, max_tokens=1000, max_tool_calls=3, allowed_tools={"read_file", "search"}, action="warn")
    assert Budget.from_attributes(b.to_attributes()) == b
    assert Budget.from_attributes({}) is None


def test_a_budget_read_from_span_attributes_skips_figures_no_limit_can_have() -> None:
    """Another language's SDK or a hostile client may send NaN, infinity or a fraction of a call:
    that limit is not read (never an error that would cost the root span its run); the rest are."""
    nan, inf = float("nan"), float("inf")
    got = Budget.from_attributes({
        "runmeter.budget.max_tool_calls": nan, "runmeter.budget.max_llm_calls": inf, "runmeter.budget.max_tokens": 2.5,
        "runmeter.budget.max_cost_usd": inf, "runmeter.budget.max_wall_clock_s": 30, "runmeter.budget.max_identical_repeats": 3.0,
    })
    assert got == Budget(max_wall_clock_s=30.0, max_identical_repeats=3)
    assert Budget.from_attributes({"runmeter.budget.max_tool_calls": nan, "runmeter.budget.max_cost_usd": -inf}) is None
    assert Budget.from_attributes({"runmeter.budget.max_cost_usd": 10**400, "runmeter.budget.max_tokens": 10**400}) is None
    breach = {"runmeter.budget.limit": "cost", "runmeter.budget.value": 2.0, "runmeter.budget.threshold": 1.0}
    assert Breach.from_attributes(breach) == Breach("cost", 2.0, 1.0, "stop")
    assert Breach.from_attributes({**breach, "runmeter.budget.value": inf}) is None
    assert Breach.from_attributes({**breach, "runmeter.budget.threshold": nan}) is None
    assert Breach.from_attributes({**breach, "runmeter.budget.value": 10**400}) is None


def test_llm_call_limit_stops_the_next_call() -> None:
    led = RunLedger("r", Budget(max_llm_calls=2))
    for _ in range(2):
        led.check_llm_call()
        led.record_llm_call(TokenUsage(10, 1), Decimal("0.001"))
    with pytest.raises(BudgetExceeded) as info:
        led.check_llm_call()
    assert (info.value.limit, info.value.value, info.value.threshold) == ("max_llm_calls", 3, 2)
    with pytest.raises(BudgetExceeded):
        led.check_llm_call()  # stays stopped
    assert len(led.breaches) == 1


def test_tokens_and_wall_clock_limits() -> None:
    clock = Clock()
    led = RunLedger("r", Budget(max_tokens=100, max_wall_clock_s=60), clock=clock)
    led.record_llm_call(TokenUsage(80, 10), None)
    led.check_llm_call()  # 90 < 100
    led.record_llm_call(TokenUsage(5, 5), None)
    with pytest.raises(BudgetExceeded, match="max_tokens"):
        led.check_llm_call()
    led2 = RunLedger("r2", Budget(max_wall_clock_s=60), clock=clock)
    clock.t = 59.9
    led2.check_tool_call("x")
    clock.t = 60.0
    with pytest.raises(BudgetExceeded, match="max_wall_clock_s"):
        led2.check_tool_call("x")


def test_tool_limits_and_allow_list() -> None:
    led = RunLedger("r", Budget(max_tool_calls=2, allowed_tools={"read_file"}))
    with pytest.raises(BudgetExceeded, match="allowed_tools"):
        led.check_tool_call("rm_rf")
    led.check_tool_call("read_file")
    led.record_tool_call("read_file", "a")
    led.record_tool_call("read_file", "b")
    with pytest.raises(BudgetExceeded, match="max_tool_calls"):
        led.check_tool_call("read_file")


def test_identical_repeats_counts_repeats_after_the_first() -> None:
    led = RunLedger("r", Budget(max_identical_repeats=2))
    for _ in range(3):  # the first call and two repeats are allowed
        led.check_tool_call("search", "q")
        led.record_tool_call("search", "q")
    led.check_tool_call("search", "other")  # different arguments: fine
    with pytest.raises(BudgetExceeded) as info:
        led.check_tool_call("search", "q")
    assert info.value.limit == "max_identical_repeats" and info.value.value == 3
    for _ in range(3):
        led.check_llm_call("h")
        led.record_llm_call(None, None, "h")
    with pytest.raises(BudgetExceeded, match="max_identical_repeats"):
        led.check_llm_call("h")


def test_warn_records_each_limit_once_and_goes_on() -> None:
    led = RunLedger("r", Budget(max_cost_usd=0.01, action="warn"))
    led.record_llm_call(TokenUsage(1, 1), Decimal("0.02"))
    first = led.check_llm_call()
    assert [(b.limit, b.action) for b in first] == [("max_cost_usd", "warn")]
    assert led.check_llm_call() == []
    assert len(led.breaches) == 1


def test_no_budget_never_raises() -> None:
    led = RunLedger("r")
    led.record_llm_call(TokenUsage(10**9, 10**9), Decimal(10**6))
    assert led.check_llm_call() == [] and led.check_tool_call("anything") == []


def test_loop_detector_fires_once_and_keeps_counting() -> None:
    d = LoopDetector(threshold=3)
    fired = [d.observe_tool("read_file", "h", "a.py") for _ in range(5)]
    assert [len(f) for f in fired] == [0, 0, 2, 0, 0]
    assert {(s.kind, s.count) for s in d.signals()} == {("identical_tool_call", 5), ("repeated_context_read", 5)}


def test_cycles_of_period_two_and_three_and_not_one() -> None:
    d = LoopDetector(3)
    for name in "ABCABCABC":
        d.observe_tool(name)
    assert [(s.kind, s.key, s.count) for s in d.signals()] == [("tool_cycle", "A>B>C", 3)]
    d2 = LoopDetector(3)
    for name in "AAAAAA":
        d2.observe_tool(name)
    assert d2.signals() == []  # same tool, no args hash: neither an identical call nor a cycle
    d3 = LoopDetector(3)
    for name in "ABABA":
        d3.observe_tool(name)
    assert d3.signals() == []  # two full repetitions only
    with pytest.raises(ValueError):
        LoopDetector(1)


def test_budget_exceeded_pickles_whole() -> None:
    """A stop raised in a process pool's task travels back to the caller pickled."""
    import pickle

    stop = BudgetExceeded("run-1", Breach("max_llm_calls", 3, 2, "stop"))
    back = pickle.loads(pickle.dumps(stop))
    assert (type(back), back.run_id, back.breach, str(back)) == (BudgetExceeded, "run-1", stop.breach, str(stop))


def test_a_runs_spend_is_summed_exactly_under_the_agents_decimal_context() -> None:
    """The ledger sums on the agent's thread, whose code may have lowered the decimal precision:
    $1.00001 + $0.00002 at a precision of 3 would read $1.00, under a $1.00002 limit."""
    import decimal

    led = RunLedger("r", Budget(max_cost_usd=1.00002))
    with decimal.localcontext(decimal.Context(prec=3)):
        led.record_llm_call(TokenUsage(10, 1), Decimal("1.00001"))
        led.record_llm_call(TokenUsage(10, 1), Decimal("0.00002"))
        assert led.cost_usd == Decimal("1.00003")
        with pytest.raises(BudgetExceeded):
            led.check_llm_call()
