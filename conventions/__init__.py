"""runmeter semantic conventions.

``attributes`` holds every name runmeter records (attributes under
``runmeter.*``, event and metric names, and the upstream names it relies on),
generated from ``registry/*.yaml``. ``genai`` is the official GenAI attribute
names from ``opentelemetry-semantic-conventions`` plus those references.
Code uses these constants, never attribute names as string literals.

Regenerate after editing the registry::

    python -m runmeter.conventions.generate
"""

from __future__ import annotations

from runmeter.conventions import attributes, genai
from runmeter.conventions._dialects import LLM_OPERATIONS, MAX_CALL_USD, Dialect, DialectMap, GenAIFields, load_dialects
from runmeter.conventions._outcomes import OUTCOMES, check_outcome


__all__ = ["LLM_OPERATIONS", "MAX_CALL_USD", "OUTCOMES", "Dialect", "DialectMap", "GenAIFields", "attributes", "check_outcome", "genai", "load_dialects"]
