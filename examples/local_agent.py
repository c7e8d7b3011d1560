"""The same agent on a local model served by an OpenAI-compatible server (vLLM, llama.cpp, Ollama).

Its cost is the GPUs' time, priced per GPU-hour in ``runmeter.toml``
(``[pricing.local."llama-3.3-70b"]``), so a local run's cost sits beside a cloud run's::

    OPENAI_BASE_URL=http://gpu-box:8000/v1 OPENAI_API_KEY=none \
        opentelemetry-instrument python examples/local_agent.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from agent import main  # noqa: E402

if __name__ == "__main__":
    main(default_model="llama-3.3-70b")
