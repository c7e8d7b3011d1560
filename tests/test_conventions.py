"""The conventions registry and what is generated from it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes

from runmeter.conventions import attributes, genai
from runmeter.conventions.generate import (
    PRIMITIVE_TYPES,
    RegistryError,
    load_registry,
    outputs,
    render_python,
)

GROUPS = load_registry()
ALL = [a for g in GROUPS for a in g.attributes]
OURS = [a for a in ALL if a.origin == "runmeter"]
OFFICIAL = {v for k, v in vars(gen_ai_attributes).items() if k.isupper() and isinstance(v, str)}


def test_generated_files_are_up_to_date() -> None:
    for path, text in outputs().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run python -m runmeter.conventions.generate"


def test_generator_check_mode_reports_fresh(root: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "runmeter.conventions.generate", "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_issue_required_names_exist() -> None:
    required = {
        "runmeter.cost.usd": "double",
        "runmeter.cost.source": "string",
        "runmeter.cost.estimated": "boolean",
        "runmeter.cost.unpriced": "boolean",
        "runmeter.run.id": "string",
        "runmeter.run.name": "string",
        "runmeter.run.owner": "string",
        "runmeter.run.project": "string",
        "runmeter.task.id": "string",
        "runmeter.run.outcome": "enum",
        "runmeter.tool.args_hash": "string",
        "runmeter.tool.resource": "string",
        "runmeter.llm.input_hash": "string",
        "gen_ai.usage.cost.amount": "double",
        "gen_ai.usage.cost.currency": "string",
        "gen_ai.usage.cost.source": "string",
    }
    by_id = {a.id: a for a in ALL}
    for name, kind in required.items():
        assert by_id[name].type == kind, name
    outcome = by_id["runmeter.run.outcome"]
    assert {m.value for m in outcome.members} == {"accepted", "rejected", "abandoned", "failed"}
    assert any(a.id.startswith("runmeter.budget.") for a in ALL)
    assert {"runmeter.loop.kind", "runmeter.loop.count"} <= by_id.keys()


def test_runmeter_names_never_collide_with_official_ones() -> None:
    for a in OURS:
        assert a.id.startswith("runmeter."), a.id
        assert a.id not in OFFICIAL, a.id


def test_upstream_references_match_the_official_package() -> None:
    refs = [a for a in ALL if a.origin == "upstream"]
    assert {a.id for a in refs} >= {
        "gen_ai.provider.name",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
    }
    for a in refs:
        # Where the installed package has the name, it is spelled the same.
        const = re.sub(r"[^A-Za-z0-9]", "_", a.id).upper()
        if hasattr(gen_ai_attributes, const):
            assert getattr(gen_ai_attributes, const) == a.id


def test_cost_proposal_is_marked_development_and_a_proposal() -> None:
    for a in ALL:
        if a.id.startswith("gen_ai.usage.cost."):
            assert a.origin == "upstream-proposal"
            assert a.stability == "development"
            assert "proposal" in a.note.lower()
            assert a.id not in OFFICIAL  # if upstream adopts it, this registry entry must change


def test_every_type_and_enum_value_is_valid() -> None:
    for a in ALL:
        assert a.type in PRIMITIVE_TYPES | {"enum"}, a.id
        if a.type == "enum":
            values = [m.value for m in a.members]
            assert values and all(isinstance(v, str) and v for v in values)
            assert len(set(values)) == len(values)
        for example in a.examples:
            _check_example(a.type, example, a)


def _check_example(kind: str, example: object, a: object) -> None:
    checks = {
        "string": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "enum": lambda v: v in {m.value for m in a.members},  # type: ignore[attr-defined]
    }
    if kind.endswith("[]"):
        assert isinstance(example, list), a
        for item in example:
            assert checks[kind[:-2]](item), a
    else:
        assert checks[kind](example), a


def test_generated_constants_and_enums() -> None:
    assert attributes.RUNMETER_COST_USD == "runmeter.cost.usd"
    assert attributes.RunmeterRunOutcomeValues.ACCEPTED.value == "accepted"
    assert attributes.RUNMETER_LOOP_DETECTED_EVENT == "runmeter.loop.detected"
    assert attributes.RUNMETER_RUN_COST_METRIC == "runmeter.run.cost"
    assert genai.GEN_AI_USAGE_INPUT_TOKENS == "gen_ai.usage.input_tokens"
    assert genai.GEN_AI_USAGE_COST_AMOUNT == "gen_ai.usage.cost.amount"


def _write(tmp: Path, doc: object) -> Path:
    (tmp / "x.yaml").write_text(yaml.safe_dump(doc))
    return tmp


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ({"id": "runmeter.a.b", "type": "float", "brief": "b", "stability": "development"}, "unknown type"),
        ({"id": "runmeter.a.b", "type": "string", "brief": "b", "stability": "beta-ish"}, "unknown stability"),
        ({"id": "gen_ai.mine", "type": "string", "brief": "b", "stability": "development"}, "runmeter.*"),
        ({"id": "runmeter.a.b", "type": {"members": []}, "brief": "b", "stability": "development"}, "at least one member"),
        ({"id": "runmeter.a.b", "type": "string", "stability": "development"}, "'brief'"),
    ],
)
def test_malformed_registry_is_refused(tmp_path: Path, attr: dict[str, object], message: str) -> None:
    doc = {"groups": [{"id": "g", "type": "attribute_group", "brief": "b", "attributes": [attr]}]}
    with pytest.raises(RegistryError, match=re.escape(message)):
        load_registry(_write(tmp_path, doc))


def test_editing_the_registry_changes_the_output(tmp_path: Path) -> None:
    doc = {"groups": [{"id": "g", "type": "attribute_group", "brief": "b", "attributes": [
        {"id": "runmeter.new.name", "type": "int", "brief": "new", "stability": "development", "examples": [1]}]}]}
    text = render_python(load_registry(_write(tmp_path, doc)))
    assert "RUNMETER_NEW_NAME: Final = 'runmeter.new.name'" in text


def test_code_never_spells_attribute_names_as_literals(root: Path) -> None:
    pattern = re.compile(r"""["'](gen_ai|runmeter)\.[a-z_]+(\.[a-z_]+)*["']""")
    offenders = []
    for folder in ("runmeter", "processor", "instrumentation", "exporter", "collector"):
        for path in (root / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
