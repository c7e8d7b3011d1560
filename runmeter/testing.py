"""A local LLM simulator on 127.0.0.1 speaking the OpenAI, Anthropic and Gemini wire formats.

For ``make demo``, the tests, and trying runmeter with no keys and no network::

    with Simulator() as sim:
        client = openai.OpenAI(base_url=sim.openai_url, api_key="sk-local")
        anthropic.Anthropic(base_url=sim.anthropic_url, api_key="sk-ant-local")

Endpoints: ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings``
(OpenAI: JSON, or server-sent events with ``stream: true``, with the usage chunk
only when ``stream_options.include_usage`` is set), and ``POST /v1/messages``
(Anthropic: JSON or its SSE event stream, with ``message_start`` carrying the
placeholder ``output_tokens: 1`` and ``message_delta`` the cumulative usage, as
the real API does), and ``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (Gemini: camelCase JSON; each streamed chunk
carries the prompt's count, the last one the whole ``usageMetadata``), and Bedrock
Runtime's ``POST /model/{modelId}/converse``, ``/converse-stream`` (the AWS event
stream's binary framing) and ``/invoke`` (an Anthropic or a Llama body, with the
``X-Amzn-Bedrock-*-Token-Count`` headers), for ``boto3.client("bedrock-runtime",
endpoint_url=sim.url)``.

What it answers is a :class:`Reply`: the next queued one (``sim.queue(...)``),
else ``sim.responder(request)``, else a deterministic default whose usage
follows from the request. Each reply can carry an HTTP error (429 with
``Retry-After``, 500) or cut its stream mid-way. Every request is kept in
``sim.requests`` (path, headers, body) so tests can count them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a dropped stream) is normal here, not an error to print."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)


__all__ = ["Reply", "Request", "Simulator", "ToolCall"]


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = "call_1"


@dataclass
class Reply:
    """One answer. Token counts are in each provider's own terms:

    OpenAI: ``input_tokens`` is ``prompt_tokens`` (cached included), ``output_tokens``
    is ``completion_tokens`` (reasoning included). Anthropic: ``input_tokens`` excludes
    ``cached_tokens`` (cache reads) and ``cache_write_tokens``. Gemini: ``input_tokens``
    is ``promptTokenCount`` (cached content included), ``output_tokens`` is
    ``candidatesTokenCount`` and ``reasoning_tokens`` is ``thoughtsTokenCount`` (apart).
    """

    text: str = "Done."
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # Anthropic: the part of cache_write_tokens kept for an hour
    web_searches: int = 0  # server-side web searches: Anthropic's server_tool_use, OpenAI Responses' web_search_call items
    file_searches: int = 0  # OpenAI Responses' file_search_call items
    reasoning_tokens: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    model: str | None = None  # the response's model id; default: the request's
    status: int = 200
    retry_after: str | None = None
    cut_after_chunks: int | None = None  # stream: drop the connection after this many events
    delay_s: float = 0.0
    service_tier: str = "default"  # OpenAI: the tier the response reports ("priority" costs more)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _words(obj: Any) -> int:
    """A deterministic size of a request body: characters of its text / 4."""
    return max(1, len(json.dumps(obj, sort_keys=True, default=str)) // 4)


class Simulator:
    """Threaded HTTP server; use as a context manager or call start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[Request] = []
        self.responder: Callable[[Request], Reply] | None = None
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = 0
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                sim._handle(self)

        self._server = _QuietServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    @property
    def gemini_url(self) -> str:
        """For ``genai.Client(http_options={"base_url": sim.gemini_url})``."""
        return self.url

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="llm-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _new_id(self, prefix: str) -> str:
        """A response id, unique as a provider's are (runmeter tells one call seen twice by it)."""
        with self._lock:
            self._ids += 1
            return f"{prefix}-{self._ids}"

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def count(self, path_suffix: str = "") -> int:
        return sum(1 for r in self.requests if r.path.endswith(path_suffix))

    # --- handling ---------------------------------------------------------------------------

    def _next_reply(self, req: Request) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(req)
        return Reply()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        req = Request(h.path.split("?")[0], {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(req)
        reply = self._next_reply(req)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            self._error(h, req, reply)
            return
        path = req.path
        if path.startswith("/model/"):
            self._bedrock(h, req, reply)
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            self._gemini(h, req, reply, stream=":streamGenerateContent" in path)
        elif path.endswith("/chat/completions"):
            self._chat(h, req, reply)
        elif path.endswith("/responses"):
            self._responses(h, req, reply)
        elif path.endswith("/embeddings"):
            self._json(h, self._embeddings(req, reply))
        elif path.endswith("/messages"):
            self._messages(h, req, reply)
        else:
            self._json(h, {"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}}, 404)

    # --- wire helpers -----------------------------------------------------------------------

    def _json(self, h: BaseHTTPRequestHandler, payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, req: Request, reply: Reply) -> None:
        headers = {"Retry-After": reply.retry_after} if reply.retry_after else {}
        if "Content" in req.path:  # Gemini: the Google API error shape
            status = {429: "RESOURCE_EXHAUSTED", 401: "UNAUTHENTICATED", 400: "INVALID_ARGUMENT"}.get(reply.status, "INTERNAL")
            payload: dict[str, Any] = {"error": {"code": reply.status, "message": f"simulated {reply.status}", "status": status}}
        elif req.path.endswith("/messages"):
            kind = "rate_limit_error" if reply.status == 429 else "api_error"
            payload = {"type": "error", "error": {"type": kind, "message": f"simulated {reply.status}"}}
        elif reply.status == 401:
            # As some OpenAI-compatible servers answer: the key that was sent, quoted back in full.
            key = req.headers.get("authorization", "").removeprefix("Bearer ").strip()
            payload = {"error": {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error",
                                 "param": None, "code": "invalid_api_key"}}
        else:
            kind = "rate_limit_exceeded" if reply.status == 429 else "server_error"
            payload = {"error": {"message": f"simulated {reply.status}", "type": kind, "code": kind}}
        self._json(h, payload, reply.status, headers)

    def _sse(self, h: BaseHTTPRequestHandler, events: list[tuple[str | None, dict[str, Any] | str]], cut: int | None,
             end: str = "\n\n") -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i, (name, data) in enumerate(events):
            if cut is not None and i >= cut:
                # The connection drops mid-body: no terminating chunk, as when a network path fails.
                h.wfile.flush()
                h.close_connection = True
                return
            payload = data if isinstance(data, str) else json.dumps(data)
            body = ((f"event: {name}\n" if name else "") + f"data: {payload}{end}").encode()
            h.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    # --- OpenAI ----------------------------------------------------------------------------------

    @staticmethod
    def _oa_usage(req: Request, reply: Reply) -> dict[str, Any]:
        prompt = reply.input_tokens if reply.input_tokens is not None else _words(req.body.get("messages") or req.body.get("input"))
        completion = reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4) + reply.reasoning_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0,
                                      # the newer field, sent only when there were cache writes
                                      **({"cache_write_tokens": reply.cache_write_tokens} if reply.cache_write_tokens else {})},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    def _chat(self, h: BaseHTTPRequestHandler, req: Request, reply: Reply) -> None:
        model = reply.model or req.body.get("model", "gpt-5.5")
        usage = self._oa_usage(req, reply)
        finish = "tool_calls" if reply.tool_calls else "stop"
        tool_calls = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": json.dumps(t.arguments)}}
            for t in reply.tool_calls
        ]
        base = {"id": self._new_id("chatcmpl-sim"), "created": int(time.time()), "model": model, "system_fingerprint": "fp_sim",
                "service_tier": reply.service_tier}
        if not req.body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else reply.text, "refusal": None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            self._json(h, {**base, "object": "chat.completion",
                           "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}], "usage": usage})
            return
        chunk = {**base, "object": "chat.completion.chunk"}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        ]
        if tool_calls:
            for i, t in enumerate(tool_calls):
                events.append((None, {**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, **t}]}, "finish_reason": None}]}))
        else:
            for piece in _pieces(reply.text):
                events.append((None, {**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
        events.append((None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
        if (req.body.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**chunk, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        self._sse(h, events, reply.cut_after_chunks)

    def _responses(self, h: BaseHTTPRequestHandler, req: Request, reply: Reply) -> None:
        model = reply.model or req.body.get("model", "gpt-5.5")
        u = self._oa_usage(req, reply)
        usage = {
            "input_tokens": u["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": reply.cached_tokens,
                                     **({"cache_write_tokens": reply.cache_write_tokens} if reply.cache_write_tokens else {})},
            "output_tokens": u["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
            "total_tokens": u["total_tokens"],
        }
        output: list[dict[str, Any]] = [
            {"type": "web_search_call", "id": f"ws_{i}", "status": "completed", "action": {"type": "search", "query": f"query {i}"}}
            for i in range(reply.web_searches)
        ] + [
            {"type": "file_search_call", "id": f"fs_{i}", "status": "completed", "queries": [f"query {i}"], "results": None}
            for i in range(reply.file_searches)
        ]
        for t in reply.tool_calls:
            output.append({"type": "function_call", "id": "fc_1", "call_id": t.id, "name": t.name,
                           "arguments": json.dumps(t.arguments), "status": "completed"})
        if not reply.tool_calls:
            output.append({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
        response = {"id": self._new_id("resp_sim"), "object": "response", "created_at": int(time.time()), "model": model,
                    "status": "completed", "output": output, "usage": usage, "parallel_tool_calls": True,
                    "service_tier": reply.service_tier,
                    "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
                    "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}}}
        if not req.body.get("stream"):
            self._json(h, response)
            return
        created = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            ("response.created", {"type": "response.created", "sequence_number": 0, "response": created})
        ]
        def add(kind: str, **fields: Any) -> None:  # the API numbers every event of a stream in order
            events.append((kind, {"type": kind, "sequence_number": len(events), **fields}))

        add("response.in_progress", response=created)
        for index, item in enumerate(output):  # each output item is announced, filled and closed
            if item["type"] == "message":
                add("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
                add("response.content_part.added", item_id=item["id"], output_index=index, content_index=0,
                    part={"type": "output_text", "text": "", "annotations": []})
                for piece in _pieces(reply.text):
                    add("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0, delta=piece, logprobs=[])
                add("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=reply.text, logprobs=[])
                add("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                    part={"type": "output_text", "text": reply.text, "annotations": []})
            elif item["type"] in ("web_search_call", "file_search_call"):
                add("response.output_item.added", output_index=index, item={**item, "status": "in_progress"})
                for phase in ("in_progress", "searching", "completed"):
                    add(f"response.{item['type']}.{phase}", output_index=index, item_id=item["id"])
            else:
                add("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "arguments": ""})
                add("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=item["arguments"])
                add("response.function_call_arguments.done", item_id=item["id"], output_index=index, arguments=item["arguments"])
            add("response.output_item.done", output_index=index, item=item)
        add("response.completed", response=response)
        self._sse(h, events, reply.cut_after_chunks)

    def _embeddings(self, req: Request, reply: Reply) -> dict[str, Any]:
        inputs = req.body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        prompt = reply.input_tokens if reply.input_tokens is not None else _words(inputs)
        return {"object": "list", "model": reply.model or req.body.get("model", "text-embedding-3-small"),
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(items))],
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}

    # --- Anthropic -------------------------------------------------------------------------------

    def _messages(self, h: BaseHTTPRequestHandler, req: Request, reply: Reply) -> None:
        model = reply.model or req.body.get("model", "claude-haiku-4-5")
        inp = reply.input_tokens if reply.input_tokens is not None else _words(req.body.get("messages"))
        out = reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4)
        content: list[dict[str, Any]] = [
            {"type": "tool_use", "id": t.id, "name": t.name, "input": t.arguments} for t in reply.tool_calls
        ] or [{"type": "text", "text": reply.text}]
        stop = "tool_use" if reply.tool_calls else "end_turn"
        usage = {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": reply.cached_tokens,
                 "cache_creation_input_tokens": reply.cache_write_tokens, "service_tier": "standard",
                 "cache_creation": {"ephemeral_5m_input_tokens": reply.cache_write_tokens - reply.cache_write_1h_tokens,
                                    "ephemeral_1h_input_tokens": reply.cache_write_1h_tokens}}
        if reply.web_searches:
            usage["server_tool_use"] = {"web_search_requests": reply.web_searches, "web_fetch_requests": 0}
        message = {"id": self._new_id("msg_sim"), "type": "message", "role": "assistant", "model": model, "content": content,
                   "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not req.body.get("stream"):
            self._json(h, message)
            return
        start_usage = {**usage, "output_tokens": 1}  # the API's placeholder
        if reply.web_searches:  # none run yet when the message starts: message_delta has the count
            start_usage["server_tool_use"] = {"web_search_requests": 0, "web_fetch_requests": 0}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            ("message_start", {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": start_usage}}),
        ]
        for i, block in enumerate(content):
            if block["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}))
                for piece in _pieces(block["text"]):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}}))
            else:
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {**block, "input": {}}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        # The current API's message_delta usage is cumulative: it repeats the input counts.
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        self._sse(h, events, reply.cut_after_chunks)


    # --- Gemini ----------------------------------------------------------------------------------

    def _gemini(self, h: BaseHTTPRequestHandler, req: Request, reply: Reply, stream: bool) -> None:
        model = reply.model or req.path.rsplit("/", 1)[-1].split(":")[0]
        prompt = reply.input_tokens if reply.input_tokens is not None else _words(req.body.get("contents"))
        out = reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4)
        usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": out,
                                 "totalTokenCount": prompt + out + reply.reasoning_tokens,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if reply.cached_tokens:
            usage["cachedContentTokenCount"] = reply.cached_tokens
        if reply.reasoning_tokens:
            usage["thoughtsTokenCount"] = reply.reasoning_tokens
        parts: list[dict[str, Any]] = [{"functionCall": {"name": t.name, "args": t.arguments}} for t in reply.tool_calls] \
            or [{"text": reply.text}]
        base = {"modelVersion": model, "responseId": self._new_id("gemini-sim")}
        if not stream:
            self._json(h, {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
                           "usageMetadata": usage, **base})
            return
        # The API's stream: every chunk counts the prompt; the last one carries the whole usage.
        events: list[tuple[str | None, dict[str, Any] | str]] = []
        pieces = [{"text": p} for p in _pieces(reply.text)] if not reply.tool_calls else parts
        for i, part in enumerate(pieces):
            last = i == len(pieces) - 1
            candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = "STOP"
            chunk_usage = usage if last else {"promptTokenCount": prompt, "totalTokenCount": prompt}
            events.append((None, {"candidates": [candidate], "usageMetadata": chunk_usage, **base}))
        self._sse(h, events, reply.cut_after_chunks, end="\r\n\r\n")


    # --- Bedrock Runtime -------------------------------------------------------------------------

    def _bedrock(self, h: BaseHTTPRequestHandler, req: Request, reply: Reply) -> None:
        from urllib.parse import unquote

        model_id, _, action = unquote(req.path[len("/model/"):]).rpartition("/")
        model = reply.model or model_id
        inp = reply.input_tokens if reply.input_tokens is not None else _words(req.body.get("messages"))
        out = reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4)
        stop = "tool_use" if reply.tool_calls else "end_turn"
        if action == "invoke":
            if "anthropic_version" in req.body:  # the Anthropic Messages body, as on Anthropic's API
                body: dict[str, Any] = {
                    "id": self._new_id("msg_bdrk_sim"), "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": reply.text}], "stop_reason": stop, "stop_sequence": None,
                    "usage": {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": reply.cached_tokens,
                              "cache_creation_input_tokens": reply.cache_write_tokens}}
            else:  # Meta Llama's body
                body = {"generation": reply.text, "prompt_token_count": inp, "generation_token_count": out, "stop_reason": "stop"}
            headers = {"X-Amzn-Bedrock-Input-Token-Count": str(inp), "X-Amzn-Bedrock-Output-Token-Count": str(out),
                       "X-Amzn-Bedrock-Invocation-Latency": "120"}
            self._json(h, body, headers=headers)
            return
        usage = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out + reply.cached_tokens + reply.cache_write_tokens}
        if reply.cached_tokens:
            usage["cacheReadInputTokens"] = reply.cached_tokens
        if reply.cache_write_tokens:
            usage["cacheWriteInputTokens"] = reply.cache_write_tokens
        content: list[dict[str, Any]] = [{"toolUse": {"toolUseId": t.id, "name": t.name, "input": t.arguments}} for t in reply.tool_calls] \
            or [{"text": reply.text}]
        if action == "converse":
            self._json(h, {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                           "usage": usage, "metrics": {"latencyMs": 120}})
            return
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        for piece in _pieces(reply.text):
            events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}))
        events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": stop}),
                   ("metadata", {"usage": usage, "metrics": {"latencyMs": 120}})]
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.amazon.eventstream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i, (kind, payload) in enumerate(events):
            if reply.cut_after_chunks is not None and i >= reply.cut_after_chunks:
                h.wfile.flush()
                h.close_connection = True
                return
            frame = _event_frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                                 json.dumps(payload).encode())
            h.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


def _event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of the AWS event stream: a prelude (total and header lengths, their CRC32),
    string headers, the payload, and the CRC32 of all of it."""
    import struct
    import zlib

    head = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode() for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
