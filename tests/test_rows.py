"""Attribute maps and span rows in C (exporter/_speedups.c) against the Python rules they stand in for.

Every span's attributes go through ``attr_map`` on their way to the ``Map(String, String)``
column; the C loop must build the very dict the Python one builds, for every kind of key and value
an instrumentation or a hostile client can send, and fail the same way where Python fails. The
common span's whole ``otel_traces`` row is built in C too (``trace_row``): the same row, value for
value and type for type, or the Python path for what C leaves to it.
"""

from __future__ import annotations

import enum
import math
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from runmeter.exporter._rows import MAX_NS, Unstorable, _attr_map, _trace_row, attr_map, stringify, text, trace_row
from runmeter.exporter._speedups import attr_map as c_attr_map  # built by make's install: a missing build fails here
from runmeter.exporter._speedups import trace_row as c_trace_row
from runmeter.processor import span_fields


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


# --- whole rows -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A row's value with every dict as its items in order (a ClickHouse map keeps the order)."""
    if isinstance(value, dict):
        return [("dict", k, _plain(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return (type(value).__name__, value)


def same_row(span: ReadableSpan) -> list[Any] | None:
    """trace_row(span) (C where it can) against the Python row: equal value for value, type for
    type, or refused with the same error. Returns C's own answer (None: it left the span to Python)."""
    try:
        expected: list[Any] | BaseException = _trace_row(span)
    except Exception as exc:  # noqa: BLE001 - compared below
        expected = exc
    fields = span_fields(span)
    assert fields is not None, "the SDK's span layout was not recognised: the C rows are never used"
    direct = c_trace_row(fields)
    if isinstance(expected, BaseException):
        assert direct is None  # C never refuses a span: Python does, with its reasons
        with pytest.raises(type(expected), match=__import__("re").escape(str(expected))):
            trace_row(span)
        return direct
    got = trace_row(span)
    assert _plain(got) == _plain(expected)
    if direct is not None:
        assert _plain(direct) == _plain(expected)
    return direct


RESOURCE = Resource({"service.name": "svc", "host.name": "h\u00e9", "pid": 42})
SCOPE = InstrumentationScope("runmeter", "1.0")


def _span(**kw: Any) -> ReadableSpan:
    fields: dict[str, Any] = dict(
        name="chat gpt-4o", context=SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, False, TraceFlags(1)),
        parent=SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x1, False), resource=RESOURCE, kind=SpanKind.CLIENT,
        attributes={"gen_ai.usage.input_tokens": 12, "gen_ai.response.finish_reasons": ("stop",), "ok": True},
        start_time=1_700_000_000_000_000_000, end_time=1_700_000_000_250_000_000, instrumentation_scope=SCOPE,
        status=Status(StatusCode.OK),
    )
    fields.update(kw)
    return ReadableSpan(**fields)


def test_a_plain_span_is_read_in_c_into_the_row_worked_out_by_hand() -> None:
    row = same_row(_span())
    assert row is not None, "C left the commonest span to Python"
    assert row[:8] == [
        1_700_000_000_000_000_000, "0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7", "0000000000000001", "",
        "chat gpt-4o", "Client", "svc",
    ]
    assert row[8] == {"service.name": "svc", "host.name": "h\u00e9", "pid": "42"}
    assert row[9:15] == [
        "runmeter", "1.0", {"gen_ai.usage.input_tokens": "12", "gen_ai.response.finish_reasons": '["stop"]', "ok": "true"},
        250_000_000, "Ok", "",
    ]
    assert row[15:] == [[]] * 7


def test_what_c_leaves_to_python_is_built_there_and_what_python_refuses_is_refused() -> None:
    events = [Event("retry", {"attempt": 2}, timestamp=1_700_000_000_100_000_000)]
    links = [Link(SpanContext(5, 6, True), {"k": "v"})]
    for left in (_span(events=events), _span(links=links)):
        assert same_row(left) is None  # built in Python: the same row as before
    for refused in (_span(start_time=MAX_NS + 1), _span(end_time=MAX_NS + 5)):
        assert same_row(refused) is None
        with pytest.raises(Unstorable):
            trace_row(refused)


def test_a_trace_state_and_a_status_message_are_written_in_c_as_python_writes_them() -> None:
    state = SpanContext(7, 8, False, TraceFlags(1), TraceState([("vendor", "x"), ("other", "y")]))
    leaked = "Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz123456"
    row = same_row(_span(context=state, status=Status(StatusCode.ERROR, leaked)))
    assert row is not None, "C left the span to Python"
    assert row[4] == "vendor=x,other=y"  # the W3C tracestate header, in order
    assert row[13] == "Error" and row[14] == "Incorrect API key provided: [REDACTED]"  # never the key


def test_unusual_but_storable_spans_are_read_in_c_the_python_way() -> None:
    rows = [
        same_row(_span(name="r\u00e9sum\u00e9 \ud800", start_time=None, end_time=None, parent=None, kind=SpanKind.INTERNAL)),
        same_row(_span(context=None, instrumentation_scope=None, status=Status(StatusCode.UNSET), end_time=0)),
        same_row(_span(start_time=10, end_time=5, instrumentation_scope=InstrumentationScope("\u00e9t\u00e9", ""), attributes={})),
        same_row(_span(context=SpanContext(2**128 - 1, 2**64 - 1, False), parent=SpanContext(1, 2**64 - 1, True))),
    ]
    assert all(r is not None for r in rows)
    assert rows[0][0] == 0 and rows[0][3] == "" and rows[0][5] == "r\u00e9sum\u00e9 \ufffd" and rows[0][12] == 0
    assert rows[1][1:3] == ["", ""] and rows[1][9:11] == ["", ""] and rows[1][13] == "Unset"
    assert rows[2][12] == 0 and rows[2][9:11] == ["\u00e9t\u00e9", ""]  # an end before the start: no negative duration
    assert rows[3][1:4] == ["f" * 32, "f" * 16, "f" * 16]


_times = st.one_of(st.none(), st.integers(min_value=-5, max_value=MAX_NS + 5), st.sampled_from([0, MAX_NS, 1_700_000_000_000_000_000]))
_ids = st.integers(min_value=1, max_value=2**64 - 1)


@settings(max_examples=400, deadline=None)
@given(
    name=st.one_of(st.text(max_size=16), st.sampled_from(["chat", "execute_tool read_file"])),
    trace_id=st.integers(min_value=1, max_value=2**128 - 1), span_id=_ids, parent=st.one_of(st.none(), _ids),
    kind=st.sampled_from(list(SpanKind)), code=st.sampled_from(list(StatusCode)),
    message=st.one_of(st.none(), st.just(""), st.text(max_size=8)), start=_times, end=_times,
    scope=st.one_of(st.none(), st.tuples(st.text(max_size=8), st.one_of(st.none(), st.text(max_size=4)))),
    attributes=st.dictionaries(_keys, _values, max_size=6), events=st.booleans(),
    state=st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(["a", "vendor", "k@t"]), st.sampled_from(["1", "x y"])),
                                        max_size=3, unique_by=lambda kv: kv[0]).map(TraceState)),
)
def test_any_span_gives_the_python_row(
    name: str, trace_id: int, span_id: int, parent: int | None, kind: SpanKind, code: StatusCode, message: str | None,
    start: int | None, end: int | None, scope: tuple[str, str | None] | None, attributes: dict[str, Any], events: bool,
    state: TraceState | None,
) -> None:
    same_row(ReadableSpan(
        name=name, context=SpanContext(trace_id, span_id, False, TraceFlags(1), state),
        parent=SpanContext(trace_id, parent, False) if parent else None,
        resource=RESOURCE, attributes=attributes, kind=kind, status=Status(code, message if code is StatusCode.ERROR else None),
        start_time=start, end_time=end, instrumentation_scope=InstrumentationScope(*scope) if scope else None,
        events=[Event("e", {}, timestamp=1)] if events else (),
    ))


def test_a_calls_row_mends_only_the_text_that_needs_it() -> None:
    from runmeter.conventions import load_dialects
    from runmeter.exporter._rows import call_row
    from runmeter.processor import PriceBook

    span = _span(attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100,
        "runmeter.run.owner": "b\udc80b", "runmeter.run.project": "caf\u00e9", "runmeter.run.id": "run-1",
    })
    row = call_row(span, load_dialects(), PriceBook())
    assert row is not None
    assert row[3:9] == ["run-1", "svc", "llm", "chat", "openai", "gpt-4o-mini"]
    assert row[26:28] == ["b\ufffdb", "caf\u00e9"]  # a lone surrogate cannot be stored; other text is kept as it is
    assert all(isinstance(v, str) for v in row[3:9] + row[18:19] + row[20:24] + row[26:30])
