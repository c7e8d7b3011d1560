"""``quick_init`` (core/_frozen.py): a frozen dataclass with a quicker ``__init__`` is the same
dataclass - signature, defaults, equality, hash, repr, frozenness - and refuses what it cannot set."""

from __future__ import annotations

import dataclasses
import inspect
from decimal import Decimal

import pytest

from runmeter.core import quick_init
from runmeter.processor import RunRecord, Tokens
from runmeter.processor._loops import LoopSignal
from runmeter.processor.pricing import Cost, TokenUsage


def _pair(slots: bool) -> tuple[type, type]:
    def make() -> type:
        @dataclasses.dataclass(frozen=True, slots=slots)
        class Point:
            x: int
            y: str = "y"
            z: tuple[int, ...] = ()

        return Point

    return make(), quick_init(make())


@pytest.mark.parametrize("slots", [True, False])
def test_a_quick_init_makes_what_the_generated_one_makes(slots: bool) -> None:
    plain, quick = _pair(slots)
    assert str(inspect.signature(quick)) == str(inspect.signature(plain))
    for args, kwargs in [((1,), {}), ((1, "a", (2,)), {}), ((), {"x": 3, "z": (4,)}), ((5,), {"y": "b"})]:
        a, b = plain(*args, **kwargs), quick(*args, **kwargs)
        assert repr(a).replace("Point", "") == repr(b).replace("Point", "")
        assert dataclasses.astuple(a) == dataclasses.astuple(b)
        assert b == quick(*args, **kwargs) and hash(b) == hash(quick(*args, **kwargs))
        assert dataclasses.replace(b, x=9).x == 9
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick(1).x = 2  # type: ignore[misc]
    for bad in [lambda: quick(), lambda: quick(1, x=2), lambda: quick(1, w=2), lambda: quick(1, "a", (), 4)]:
        with pytest.raises(TypeError):
            bad()


@pytest.mark.parametrize("slotted_base", [True, False])
def test_a_slotted_class_whose_fields_are_in_its_bases_too(slotted_base: bool) -> None:
    """Slots inherited from a slotted base are set by their own descriptors, found in the base (the
    class's own slots hold every field when its base has none)."""

    @dataclasses.dataclass(frozen=True, slots=slotted_base)
    class Base:
        x: int

    @quick_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Child(Base):
        y: str = "y"

    made = Child(1, "b")
    assert (made.x, made.y) == (1, "b") and made == Child(x=1, y="b") and Child(2).y == "y"
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.x = 3  # type: ignore[misc]


def test_quick_init_refuses_what_it_cannot_set() -> None:
    @dataclasses.dataclass
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class After:
        x: int

        def __post_init__(self) -> None: ...

    @dataclasses.dataclass(frozen=True)
    class Clash:
        _setattr: int  # a name the made __init__ uses itself

    for cls in (Mutable, Factory, After, Clash, int):
        with pytest.raises(TypeError):
            quick_init(cls)


def test_the_hot_paths_frozen_classes_set_every_field() -> None:
    d = Decimal("0.25")
    usage = TokenUsage(1, 2, 3, 4, 5, 6, 7, 8)
    assert dataclasses.astuple(usage) == (1, 2, 3, 4, 5, 6, 7, 8)
    assert dataclasses.astuple(Cost(d, d, Decimal(0), "s", True, True, "m", "p")) == (d, d, Decimal(0), "s", True, True, "m", "p")
    assert Cost(d, None, None, "s") == Cost(total=d, input=None, output=None, source="s", unpriced=False, estimated=False)
    assert dataclasses.astuple(Tokens(1, 2, 3, 4, 5)) == (1, 2, 3, 4, 5) and Tokens(1) + Tokens(2, 3) == Tokens(3, 3)
    assert dataclasses.astuple(LoopSignal("k", "key", 3)) == ("k", "key", 3)
    values = {f.name: f"v{i}" for i, f in enumerate(dataclasses.fields(RunRecord))}
    assert dataclasses.asdict(RunRecord(**values)) == values  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        usage.input_tokens = 9  # type: ignore[misc]
