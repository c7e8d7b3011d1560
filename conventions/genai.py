"""Official GenAI attribute names.

Everything from ``opentelemetry-semantic-conventions``' incubating
``gen_ai_attributes``, plus the upstream names declared as references in
``registry/upstream.yaml`` (present even where the installed package lacks
them) and the upstream cost proposal.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import *  # noqa: F403
from opentelemetry.semconv._incubating.attributes.error_attributes import ERROR_TYPE  # noqa: F401
from opentelemetry.semconv._incubating.attributes.server_attributes import (  # noqa: F401
    SERVER_ADDRESS,
    SERVER_PORT,
)

from runmeter.conventions.attributes import (  # type: ignore[no-redef]  # noqa: F401  (ours win where both define a name)
    GEN_AI_PROVIDER_NAME,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_COST_AMOUNT,
    GEN_AI_USAGE_COST_CURRENCY,
    GEN_AI_USAGE_COST_SOURCE,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
)
