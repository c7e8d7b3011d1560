"""Attribute maps in C (exporter/_speedups.c) against the Python rules they stand in for.

Every span's attributes go through ``attr_map`` on their way to the ``Map(String, String)``
column; the C loop must build the very dict the Python one builds, for every kind of key and value
an instrumentation or a hostile client can send, and fail the same way where Python fails.
"""

from __future__ import annotations

import enum
import math
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runmeter.exporter._rows import _attr_map, attr_map, stringify, text
from runmeter.exporter._speedups import attr_map as c_attr_map  # built by make's install: a missing build fails here


class Color(enum.IntEnum):
    RED = 1


class Tagged(str):
    pass


class Refuses:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def both(attrs: dict[Any, Any]) -> dict[str, str]:
    expected = _attr_map(attrs)
    got = c_attr_map(attrs, text, stringify)
    assert got == expected
    assert list(got) == list(expected)  # the same order: a ClickHouse map keeps it
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in got.items())
    return got


def test_each_kind_of_value_is_stored_as_the_collector_stores_it() -> None:
    got = both({
        "s": "text", "yes": True, "no": False, "n": 42, "big": 2**70, "neg": -7, "x": 1.5, "tiny": 1e-300, "huge": 1e16,
        "nan": math.nan, "inf": -math.inf, "zero": -0.0, "list": ("a", "b"), "nums": [1, 2.5, True], "raw": b"\xffok",
        "enum": Color.RED, "tagged": Tagged("t"), "none": None, "empty": (), "reasons": ("stop", "length"),
        "quoted": ['say "hi"', "back\\slash", "tab\t", "del\x7f"], "tagged_items": (Tagged("a"),),
    })
    # Worked out by hand from the rules (_rows.stringify): booleans lower-case, numbers their repr,
    # arrays compact JSON, bytes decoded with U+FFFD for what is not UTF-8.
    assert got["yes"] == "true" and got["no"] == "false"
    assert got["n"] == "42" and got["big"] == "1180591620717411303424" and got["neg"] == "-7"
    assert got["x"] == "1.5" and got["huge"] == "1e+16" and got["nan"] == "nan" and got["inf"] == "-inf" and got["zero"] == "-0.0"
    assert got["list"] == '["a","b"]' and got["nums"] == "[1,2.5,true]" and got["empty"] == "[]"
    assert got["reasons"] == '["stop","length"]' and got["tagged_items"] == '["a"]'
    assert got["quoted"] == '["say \\"hi\\"","back\\\\slash","tab\\t","del\x7f"]'
    assert got["raw"] == "\ufffdok"
    assert got["enum"] == repr(Color.RED) and got["tagged"] == "t" and got["none"] == "None"


def test_text_that_is_not_utf8_is_mended_in_keys_and_values_and_a_later_key_wins_a_clash() -> None:
    # A lone surrogate cannot be encoded: it becomes U+FFFD, so two keys may meet; the later wins, as in Python.
    got = both({"\ud800": "first", "\ufffd": "second", "é": "ü\udfff", 7: "int key"})
    assert got == {"\ufffd": "second", "é": "ü\ufffd", "7": "int key"}


def test_a_value_that_cannot_be_stringified_fails_the_same_way() -> None:
    with pytest.raises(RuntimeError, match="no text for you"):
        _attr_map({"a": "fine", "b": Refuses()})
    with pytest.raises(RuntimeError, match="no text for you"):
        c_attr_map({"a": "fine", "b": Refuses()}, text, stringify)
    with pytest.raises(ValueError):  # an int past the interpreter's digit limit, in both
        c_attr_map({"a": 10**5000}, text, stringify)


def test_mappings_other_than_a_dict_take_the_python_path() -> None:
    attrs = MappingProxyType({"a": 1, "b": "x"})
    assert attr_map(attrs) == {"a": "1", "b": "x"}
    assert attr_map(None) == {} and attr_map({}) == {}
    with pytest.raises(TypeError):
        c_attr_map(attrs, text, stringify)  # type: ignore[arg-type]


_keys = st.one_of(st.text(max_size=12), st.sampled_from(["gen_ai.system", "\ud800", "\ufffd", "é"]))
_scalars = st.one_of(
    st.text(max_size=20), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=8), st.none(),
)
_ascii = st.text(alphabet=st.characters(max_codepoint=127), max_size=10)  # quotes, backslashes, controls, DEL among them
_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=4), st.lists(_scalars, max_size=4).map(tuple),
    st.lists(_ascii, max_size=4), st.lists(_ascii, max_size=4).map(tuple),
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=12))
def test_any_attributes_give_the_python_map(attrs: dict[str, Any]) -> None:
    both(attrs)
