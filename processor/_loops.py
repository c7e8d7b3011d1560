"""Loop signals: repeats that mean a run keeps working past the point of value.

A :class:`LoopDetector` watches one run's calls in order and reports each
signal once, when it first crosses the threshold; ``signals()`` gives the final
counts. Pure and deterministic: the same calls in the same order give the same
signals.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from runmeter.conventions.attributes import RunmeterLoopKindValues as Kind
from runmeter.core import quick_init

__all__ = ["LoopDetector", "LoopSignal"]

_IDENTICAL_TOOL_CALL = Kind.IDENTICAL_TOOL_CALL.value
_REPEATED_CONTEXT_READ = Kind.REPEATED_CONTEXT_READ.value
_IDENTICAL_LLM_INPUT = Kind.IDENTICAL_LLM_INPUT.value
_TOOL_CYCLE = Kind.TOOL_CYCLE.value
_MAX_PERIOD = 4
_HISTORY = 64
_PERIODS = tuple(range(2, _MAX_PERIOD + 1))


@quick_init
@dataclass(frozen=True, slots=True)
class LoopSignal:
    kind: str  # a RunmeterLoopKindValues value
    key: str
    count: int


class LoopDetector:
    """Counts identical tool calls, repeated resource reads, identical LLM inputs and tool cycles."""

    def __init__(self, threshold: int = 3) -> None:
        if threshold < 2:
            raise ValueError("loop threshold must be at least 2")
        self.threshold = threshold
        # Counts by key (plain dicts: a Counter costs several times as much to make, once per run).
        self.tool_calls: dict[str, int] = {}
        self.resources: dict[str, int] = {}
        self.llm_inputs: dict[str, int] = {}
        self.cycles: dict[str, int] = {}
        self._sequence: deque[str] = deque(maxlen=_HISTORY)
        self._fired: set[tuple[str, str]] = set()

    def observe_tool(self, name: str, args_hash: str | None = None, resource: str | None = None) -> list[LoopSignal]:
        fired: list[LoopSignal] = []
        if args_hash is not None:
            key = f"{name}#{args_hash}"
            n = self.tool_calls[key] = self.tool_calls.get(key, 0) + 1
            self._fire(_IDENTICAL_TOOL_CALL, key, n, fired)
        if resource is not None:
            n = self.resources[resource] = self.resources.get(resource, 0) + 1
            self._fire(_REPEATED_CONTEXT_READ, resource, n, fired)
        self._sequence.append(name)
        cycle = self._cycle()
        if cycle is not None:
            key, reps = cycle
            if reps > self.cycles.get(key, 0):
                self.cycles[key] = reps
            self._fire(_TOOL_CYCLE, key, reps, fired)
        return fired

    def observe_llm(self, input_hash: str | None) -> list[LoopSignal]:
        fired: list[LoopSignal] = []
        if input_hash is not None:
            n = self.llm_inputs[input_hash] = self.llm_inputs.get(input_hash, 0) + 1
            self._fire(_IDENTICAL_LLM_INPUT, input_hash, n, fired)
        return fired

    def repeats_of_tool(self, name: str, args_hash: str | None) -> int:
        """Identical calls so far of this tool with these arguments."""
        return 0 if args_hash is None else self.tool_calls.get(f"{name}#{args_hash}", 0)

    def repeats_of_input(self, input_hash: str | None) -> int:
        return 0 if input_hash is None else self.llm_inputs.get(input_hash, 0)

    def signals(self) -> list[LoopSignal]:
        """Every signal at or over the threshold, with its final count, in a stable order."""
        t = self.threshold
        if not (self.tool_calls or self.resources or self.llm_inputs or self.cycles):
            return []  # nothing counted (most runs read no hashes twice): no lists to make
        out = [LoopSignal(_IDENTICAL_TOOL_CALL, k, n) for k, n in self.tool_calls.items() if n >= t]
        out += [LoopSignal(_REPEATED_CONTEXT_READ, k, n) for k, n in self.resources.items() if n >= t]
        out += [LoopSignal(_IDENTICAL_LLM_INPUT, k, n) for k, n in self.llm_inputs.items() if n >= t]
        out += [LoopSignal(_TOOL_CYCLE, k, n) for k, n in self.cycles.items() if n >= t]
        return sorted(out, key=lambda s: (s.kind, s.key))

    def _fire(self, kind: str, key: str, count: int, out: list[LoopSignal]) -> None:
        if count >= self.threshold and (kind, key) not in self._fired:
            self._fired.add((kind, key))
            out.append(LoopSignal(kind, key, count))

    def _cycle(self) -> tuple[str, int] | None:
        """The shortest period (2..4 distinct-ish tools) repeating at the tail, and its repetitions."""
        seq = self._sequence
        n = len(seq)
        if n < 4:
            return None
        last = seq[-1]
        # A tail of period p repeats only if the last call equals the one p calls before it:
        # most calls fail that for every period, and need no list at all.
        for p in _PERIODS:
            if n >= 2 * p and seq[-1 - p] == last:
                break
        else:
            return None
        calls = list(seq)  # deque indexing is O(n); a list is O(1)
        for period in _PERIODS:
            if n < 2 * period:
                break
            unit = calls[n - period:]
            if len(set(unit)) < 2:
                continue  # A,A,A is an identical call, not a cycle
            reps = 1
            while (reps + 1) * period <= n and calls[n - (reps + 1) * period:n - reps * period] == unit:
                reps += 1
            if reps >= 2:
                # Name the cycle from its smallest rotation so A,B,A,B and B,A,B,A are one key.
                rotations = [unit[i:] + unit[:i] for i in range(period)]
                return ">".join(min(rotations)), reps
        return None
