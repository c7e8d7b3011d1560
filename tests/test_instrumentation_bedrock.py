"""The real boto3/botocore against the simulator's Bedrock Runtime: JSON and the AWS event stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

import runmeter
from runmeter.testing import Reply, ToolCall
from tests.instrumented import SECRET, Rig, all_attribute_text

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Triage these tickets."}]}]
# Claude Haiku 4.5 through a regional (us.) profile, as genai-prices lists it: $1.10/M in,
# $0.11/M cache read, $1.375/M cache write, $5.50/M out.
HAIKU_COST = 1_000 * 1.10e-6 + 4_000 * 0.11e-6 + 1_000 * 1.375e-6 + 200 * 5.50e-6  # $0.004015
LLAMA_COST = (1_000 + 200) * 0.72e-6  # Llama 3.3 70B: $0.72/M in and out


def cached(**kw: Any) -> Reply:
    return Reply(text="Two tickets are urgent.", input_tokens=1_000, cached_tokens=4_000, cache_write_tokens=1_000, output_tokens=200, **kw)


def plain(**kw: Any) -> Reply:
    return Reply(text="Two tickets are urgent.", input_tokens=1_000, output_tokens=200, **kw)


def test_converse(rig: Rig) -> None:
    rig.sim.queue(cached())
    response = rig.bedrock().converse(modelId=HAIKU, messages=MESSAGES, system=[{"text": "Be terse."}],
                                      inferenceConfig={"maxTokens": 300, "temperature": 0.1})
    assert response["output"]["message"]["content"][0]["text"] == "Two tickets are urgent."
    (span,) = rig.llm_spans()
    a = span.attributes
    assert span.name == f"chat {HAIKU}" and a["gen_ai.provider.name"] == "aws.bedrock"
    assert a["gen_ai.usage.input_tokens"] == 6_000  # 1,000 + 4,000 read + 1,000 written, as Anthropic counts
    assert a["gen_ai.usage.cache_read.input_tokens"] == 4_000 and a["gen_ai.usage.cache_creation.input_tokens"] == 1_000
    assert a["gen_ai.usage.output_tokens"] == 200
    assert a["runmeter.cost.usd"] == pytest.approx(HAIKU_COST, abs=1e-12)
    assert a["gen_ai.request.max_tokens"] == 300 and a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert SECRET not in all_attribute_text(rig.spans())  # the AWS secret key is never recorded


def test_converse_stream_reads_the_event_stream(rig: Rig) -> None:
    rig.sim.queue(plain(tool_calls=[]))
    response = rig.bedrock().converse_stream(modelId=LLAMA, messages=MESSAGES)
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in response["stream"] if "contentBlockDelta" in e)
    assert text == "Two tickets are urgent."
    (span,) = rig.llm_spans()
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(LLAMA_COST, abs=1e-12)
    assert span.attributes["gen_ai.usage.input_tokens"] == 1_000 and span.attributes["gen_ai.usage.output_tokens"] == 200
    assert "runmeter.cost.estimated" not in span.attributes


@pytest.mark.parametrize("family", ["anthropic", "llama"])
def test_invoke_model_leaves_the_body_readable(rig: Rig, family: str) -> None:
    if family == "anthropic":
        rig.sim.queue(cached())
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 300, "messages": [{"role": "user", "content": "Triage."}]}
        model, cost = "anthropic.claude-haiku-4-5-20251001-v1:0", HAIKU_COST  # the in-region id: the regional price too
    else:
        rig.sim.queue(plain())
        body = {"prompt": "Triage.", "max_gen_len": 300}
        model, cost = LLAMA, LLAMA_COST
    response = rig.bedrock().invoke_model(modelId=model, body=json.dumps(body))
    answer = json.loads(response["body"].read())  # what the caller reads is whole
    assert "Two tickets are urgent." in json.dumps(answer)
    (span,) = rig.llm_spans()
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(cost, abs=1e-12)
    assert span.attributes["gen_ai.request.max_tokens"] == 300
    assert span.attributes["gen_ai.operation.name"] == ("chat" if family == "anthropic" else "text_completion")


def test_an_inference_profile_arn_prices_as_its_model(rig: Rig) -> None:
    rig.sim.queue(cached())
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{HAIKU}"
    rig.bedrock().converse(modelId=arn, messages=MESSAGES)
    (span,) = rig.llm_spans()
    assert span.attributes["gen_ai.request.model"] == HAIKU
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(HAIKU_COST, abs=1e-12)


def test_tool_use_is_requested_and_runs_sum(rig: Rig) -> None:
    rig.sim.queue(plain(tool_calls=[ToolCall("lookup", {"id": "T-1"})]), plain())
    client = rig.bedrock()
    with runmeter.run("bedrock-triage", tracer_provider=rig.tracer_provider) as run:
        first = client.converse(modelId=LLAMA, messages=MESSAGES)
        assert first["stopReason"] == "tool_use"
        with runmeter.tool("lookup", args={"id": "T-1"}, tracer_provider=rig.tracer_provider):
            pass
        for _ in client.converse_stream(modelId=LLAMA, messages=MESSAGES)["stream"]:
            pass
        run.accept()
    spans = rig.llm_spans()
    (requested,) = spans[0].attributes["runmeter.tool.requested"]
    assert requested.startswith("lookup#")
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 2 and record.tool_calls_total == 1
    assert float(record.cost_usd) == pytest.approx(2 * LLAMA_COST, abs=1e-12)


def test_other_aws_calls_go_through_untouched(rig: Rig) -> None:
    client = rig.bedrock()
    with pytest.raises(Exception):  # the simulator knows no such route; botocore raises its error
        client.get_async_invoke(invocationArn="arn:aws:bedrock:us-east-1:123456789012:async-invoke/x")
    assert rig.llm_spans() == []


def test_an_error_is_recorded_unpriced(rig: Rig) -> None:
    from botocore.exceptions import ClientError

    rig.sim.queue(Reply(status=429))
    with pytest.raises(ClientError):
        rig.bedrock().converse(modelId=LLAMA, messages=MESSAGES)
    (span,) = rig.llm_spans()
    assert span.status.status_code.name == "ERROR" and "runmeter.cost.usd" not in span.attributes
