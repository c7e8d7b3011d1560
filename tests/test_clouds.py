"""OpenAI-compatible clouds, told apart by their base URL and priced by their own lists.

The real openai SDK is pointed at each cloud's real base URL; its HTTP transport delivers the
request to the simulator on 127.0.0.1 instead (the fake is the network, nothing of ours).
Expected costs are the providers' list prices (genai-prices) times the simulator's tokens:
1,000 in, 200 out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timezone
from typing import Any

import pytest

from runmeter.processor import PriceBook, PriceOverrides

from runmeter.testing import Reply
from tests.instrumented import SECRET, Rig

def _deepseek_chat(start_ns: int) -> float:
    """DeepSeek's list price changes with the time of day: standard from 00:30 to 16:30 UTC
    ($0.27/M in, $1.10/M out), half of it the rest of the day."""
    at = datetime.fromtimestamp(start_ns // 10**9, timezone.utc).time()
    standard = time(0, 30) <= at < time(16, 30)
    return 1_000 * (0.27e-6 if standard else 0.135e-6) + 200 * (1.10e-6 if standard else 0.55e-6)


CLOUDS: list[tuple[str, str, str, float | Callable[[int], float]]] = [
    # base URL, model, provider name, cost at list price (or the price at the call's start time)
    ("https://api.groq.com/openai/v1", "llama-3.3-70b-versatile", "groq", 1_000 * 0.59e-6 + 200 * 0.79e-6),
    ("https://api.together.xyz/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "together", 1_200 * 0.88e-6),
    ("https://api.fireworks.ai/inference/v1", "accounts/fireworks/models/deepseek-v3p2", "fireworks", 1_000 * 0.56e-6 + 200 * 1.68e-6),
    ("https://api.deepseek.com", "deepseek-chat", "deepseek", _deepseek_chat),
    ("https://api.mistral.ai/v1", "mistral-large-latest", "mistral_ai", 1_000 * 2e-6 + 200 * 6e-6),
    ("https://openrouter.ai/api/v1", "anthropic/claude-sonnet-4.5", "openrouter", 1_000 * 3e-6 + 200 * 15e-6),
    ("https://api.x.ai/v1", "grok-4", "x_ai", 1_000 * 3e-6 + 200 * 15e-6),
]


def _to_simulator(rig: Rig) -> Any:
    """An httpx2 client whose transport sends every request to the simulator, path and all."""
    import httpx2

    target = httpx2.URL(rig.sim.url)

    class ToSimulator(httpx2.HTTPTransport):
        def handle_request(self, request: Any) -> Any:
            request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
            return super().handle_request(request)

    return httpx2.Client(transport=ToSimulator())


@pytest.mark.parametrize(("base_url", "model", "provider", "cost"), CLOUDS, ids=[c[2] for c in CLOUDS])
def test_a_cloud_is_known_by_its_base_url(
    rig: Rig, base_url: str, model: str, provider: str, cost: float | Callable[[int], float]
) -> None:
    import openai

    rig.sim.queue(Reply(input_tokens=1_000, output_tokens=200))
    client = openai.OpenAI(base_url=base_url, api_key=SECRET, max_retries=0, http_client=_to_simulator(rig))
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    client.close()
    (span,) = rig.llm_spans()
    assert span.attributes["gen_ai.provider.name"] == provider
    expected = cost(span.start_time) if callable(cost) else cost
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(expected, abs=1e-12)


ALIASED = PriceBook(PriceOverrides.from_mapping({"aliases": {"prod-chat": "gpt-4o"}}, None, "", ()))


@pytest.mark.parametrize("rig", [{"prices": ALIASED}], indirect=True)
def test_an_azure_deployment_prices_as_its_model(rig: Rig) -> None:
    """Azure OpenAI is called by deployment name; `[pricing.aliases]` says which model it serves."""
    import openai

    rig.sim.queue(Reply(input_tokens=1_000, output_tokens=200))
    client = openai.AzureOpenAI(azure_endpoint="https://myres.openai.azure.com", azure_deployment="prod-chat",
                                api_version="2024-10-21", api_key=SECRET, max_retries=0, http_client=_to_simulator(rig))
    client.chat.completions.create(model="prod-chat", messages=[{"role": "user", "content": "hi"}])
    client.close()
    (span,) = rig.llm_spans()
    assert rig.sim.requests[-1].path == "/openai/deployments/prod-chat/chat/completions"
    assert span.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(1_000 * 2.5e-6 + 200 * 10e-6, abs=1e-12)  # gpt-4o on Azure
