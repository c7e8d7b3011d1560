"""Tool calls a zero-code agent made, told by their results going back to the model.

An agent that runs the model's tool calls itself (no ``runmeter.tool()``, no framework) makes no
tool span: without this, its run showed 0 tool calls and a tool loop went unseen. What the agent
cannot hide is the result: the next request carries it (a ``role: tool`` message, a
``function_call_output`` item, a ``tool_result`` block, a ``functionResponse`` part, a
``toolResult`` block). Each reader here finds the results *new* in a request - the ones after the
model's last turn, named from that turn's tool calls - and :class:`ToolBook` keeps each counted
once (a retried request or a history sent again names the same call ids). The handler then makes
one ``execute_tool`` span per new result, marked ``runmeter.tool.inferred``, from the end of the
response that asked for it to the request that answers it; the processor counts it unless a tool
span of the agent's own covers the same time (``processor/_modes.py``, ``processor/_assembly.py``).

Nothing is counted twice: only results after the model's last turn are read, and each call id
once. Work per request is bounded (the last ``_MAX_SCAN`` messages, ``_MAX_ANSWERS`` results).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runmeter.core import internal_error, renew_locks_after_fork

__all__ = ["Answer", "ToolBook", "anthropic_answers", "answers_in", "bedrock_answers", "chat_answers", "gemini_answers", "responses_answers"]

_MAX_SCAN = 1024  # messages read back from the end of a request
_MAX_ANSWERS = 128  # tool results taken from one request
_REMEMBERED = 8192  # call ids and traces kept (oldest forgotten first)


@dataclass(slots=True)
class Answer:
    """One tool result in a request: the call it answers, and (when the request says) its tool."""

    call_id: str | None
    name: str | None = None
    arguments: Any = None  # as the model's turn gave them, hashed by the caller like the response side
    position: int = 0  # the message's index in the request: tells id-less results of one trace apart


def answers_in(reader: Callable[..., list[Answer]], *request: Any) -> list[Answer]:
    """``reader(*request)``; a request of a shape no reader expected counts no tool (said once)
    and never keeps the call itself from being counted."""
    try:
        return reader(*request)
    except Exception as exc:
        internal_error("tools.answers", exc)
        return []


def _get(obj: Any, key: str) -> Any:
    """A field of a message given as a dict or as an SDK object."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_NOTHING = range(0)


def _back(items: Any) -> range:
    """The indexes of the last ``_MAX_SCAN`` items of a request's message list, newest first (a
    reader stops at the model's last turn, a message or two back). A range, not a generator: this
    runs on every call."""
    if type(items) is not list and (not isinstance(items, Sequence) or isinstance(items, (str, bytes))):
        return _NOTHING
    n = len(items)
    return range(n - 1, max(-1, n - 1 - _MAX_SCAN), -1)


def _named(answers: list[Answer], calls: dict[str, tuple[Any, Any]]) -> list[Answer]:
    if not answers:
        return answers
    for a in answers:
        if a.call_id is not None and a.call_id in calls:
            a.name, a.arguments = calls[a.call_id]
    answers.reverse()  # in request order
    return answers[:_MAX_ANSWERS]


def chat_answers(messages: Any) -> list[Answer]:
    """OpenAI Chat Completions: the ``role: tool`` (and legacy ``function``) messages after the last
    assistant message, named from its ``tool_calls``."""
    answers: list[Answer] = []
    calls: dict[str, tuple[Any, Any]] = {}
    for i in _back(messages):
        m = messages[i]
        role = m.get("role") if type(m) is dict else _get(m, "role")
        if role == "user" or role == "system" or role == "developer":
            if not answers and i == 0:
                return answers  # the first request of a conversation: nothing answered yet
            continue  # before any tool result, or after the model's turn
        if role == "tool":
            answers.append(Answer(_text(_get(m, "tool_call_id")), position=i))
        elif role == "function":
            answers.append(Answer(None, _text(_get(m, "name")), position=i))
        elif role == "assistant":
            for tc in _get(m, "tool_calls") or ():
                fn = _get(tc, "function")
                cid = _text(_get(tc, "id"))
                if cid is not None and fn is not None:
                    calls[cid] = (_text(_get(fn, "name")), _get(fn, "arguments"))
            break
    return _named(answers, calls)


_RESPONSES_OUTPUTS = ("function_call_output", "custom_tool_call_output")
_RESPONSES_CALLS = ("function_call", "custom_tool_call")


def responses_answers(items: Any) -> list[Answer]:
    """OpenAI Responses: the ``function_call_output`` items after the model's last output (a
    ``function_call``, an assistant ``message``, a ``reasoning`` item), named from the calls just
    before them; with ``previous_response_id`` the calls are in the stored response (named from
    what the response that asked for them said, see :class:`ToolBook`)."""
    answers: list[Answer] = []
    calls: dict[str, tuple[Any, Any]] = {}
    seen_model = False
    for i in _back(items):
        item = items[i]
        kind = _get(item, "type")
        if kind in _RESPONSES_CALLS:
            seen_model = True
            cid = _text(_get(item, "call_id"))
            if cid is not None:
                calls[cid] = (_text(_get(item, "name")), _get(item, "arguments") if kind == "function_call" else _get(item, "input"))
        elif kind == "reasoning" or _get(item, "role") == "assistant":
            seen_model = True
        elif seen_model:
            break  # before the model's last turn: older history
        elif kind in _RESPONSES_OUTPUTS:
            answers.append(Answer(_text(_get(item, "call_id")), position=i))
    return _named(answers, calls)


def anthropic_answers(messages: Any) -> list[Answer]:
    """Anthropic Messages (and Bedrock's Anthropic bodies): the ``tool_result`` blocks of the user
    turn(s) after the last assistant turn, named from its ``tool_use`` blocks."""
    answers: list[Answer] = []
    calls: dict[str, tuple[Any, Any]] = {}
    for i in _back(messages):
        m = messages[i]
        role = _get(m, "role")
        content = _get(m, "content")
        if role == "assistant":
            for block in content if isinstance(content, list) else ():
                if _get(block, "type") == "tool_use":
                    cid = _text(_get(block, "id"))
                    if cid is not None:
                        calls[cid] = (_text(_get(block, "name")), _get(block, "input"))
            break
        for block in content if isinstance(content, list) else ():
            if _get(block, "type") == "tool_result":
                answers.append(Answer(_text(_get(block, "tool_use_id")), position=i))
    return _named(answers, calls)


def bedrock_answers(messages: Any) -> list[Answer]:
    """Bedrock Converse: the ``toolResult`` blocks after the last assistant turn, named from its
    ``toolUse`` blocks."""
    answers: list[Answer] = []
    calls: dict[str, tuple[Any, Any]] = {}
    for i in _back(messages):
        m = messages[i]
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        blocks = content if isinstance(content, list) else ()
        if m.get("role") == "assistant":
            for block in blocks:
                use = block.get("toolUse") if isinstance(block, dict) else None
                if isinstance(use, dict) and _text(use.get("toolUseId")):
                    calls[use["toolUseId"]] = (_text(use.get("name")), use.get("input"))
            break
        for block in blocks:
            result = block.get("toolResult") if isinstance(block, dict) else None
            if isinstance(result, dict):
                answers.append(Answer(_text(result.get("toolUseId")), position=i))
    return _named(answers, calls)


def gemini_answers(contents: Any, plain: Callable[[Any], Any]) -> list[Answer]:
    """google-genai: the ``function_response`` parts after the model's last turn, named by
    themselves (ids are optional in Gemini; without one, a result is told by its position).
    ``plain`` turns the SDK's argument objects into plain data, as the response side hashes them."""
    answers: list[Answer] = []
    calls: dict[str, tuple[Any, Any]] = {}
    by_name: dict[str, Any] = {}
    for i in _back(contents):
        c = contents[i]
        parts = _get(c, "parts")
        parts = parts if isinstance(parts, list) else ()
        if _get(c, "role") == "model":
            for p in parts:
                call = _get(p, "function_call")
                if call is None and isinstance(p, dict):
                    call = p.get("functionCall")
                name = _text(_get(call, "name")) if call is not None else None
                if name is not None:
                    args = plain(_get(call, "args"))
                    by_name.setdefault(name, args)
                    cid = _text(_get(call, "id"))
                    if cid is not None:
                        calls[cid] = (name, args)
            break
        for p in parts:
            resp = _get(p, "function_response")
            if resp is None and isinstance(p, dict):
                resp = p.get("functionResponse")
            if resp is not None:
                answers.append(Answer(_text(_get(resp, "id")), _text(_get(resp, "name")), position=i))
    for a in answers:
        if a.call_id is None and a.name is not None and a.name in by_name:
            a.arguments = by_name[a.name]
    return _named(answers, calls)


@dataclass(slots=True)
class NewTool:
    """A tool call to record: what it was and when it ran."""

    name: str
    key: str  # name#args_hash
    call_id: str | None
    start_ns: int


class ToolBook:
    """Process-wide memory of tool calls: the ones the model asked for (their ``name#hash`` by call
    id, for results that come back without their call, as with ``previous_response_id``), the end
    of each trace's last response (a tool's start), and the results already counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")
        self._asked: OrderedDict[str, str] = OrderedDict()
        self._last_response: dict[int, int] = {}
        self._counted: OrderedDict[tuple[Any, ...], None] = OrderedDict()

    def asked(self, trace_id: int, end_ns: int, calls: Sequence[tuple[str, str]]) -> None:
        """A response ended at ``end_ns``, asking for ``calls`` ((call id, name#hash), ids may repeat).
        Every call ends here: the last response by trace is a plain dict, set without the lock (one
        store; a trace's calls that race each other end at the same moment, near enough)."""
        last = self._last_response
        last[trace_id] = end_ns
        if len(last) > _REMEMBERED:
            last.clear()  # the oldest traces' tools then start at their answer: counted all the same
        if calls:
            with self._lock:
                for cid, key in calls:
                    _put(self._asked, cid, key)

    def new(self, trace_id: int, answers: Sequence[Answer], key_of: Callable[[Answer], str | None], now_ns: int) -> list[NewTool]:
        """The answers not counted before, to count now (each once, across retries and resends)."""
        out: list[NewTool] = []
        with self._lock:
            start = self._last_response.get(trace_id, now_ns)
            for a in answers:
                seen = (a.call_id,) if a.call_id is not None else (trace_id, a.name, a.position)
                if seen in self._counted:
                    continue
                key = key_of(a) if a.name is not None else None
                if key is None and a.call_id is not None:
                    key = self._asked.get(a.call_id)  # the request does not carry the call (previous_response_id)
                if key is None:
                    continue  # nothing says which tool it was
                _put(self._counted, seen, None)
                out.append(NewTool(key.rsplit("#", 1)[0], key, a.call_id, min(start, now_ns)))
        return out


def _put(d: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    d[key] = value
    d.move_to_end(key)
    if len(d) > _REMEMBERED:
        d.popitem(last=False)
