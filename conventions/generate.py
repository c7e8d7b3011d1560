"""Generate the Python constants and the Markdown reference from the registry.

The YAML files in ``registry/`` are the source of truth for every name runmeter
records. Run ``python -m runmeter.conventions.generate`` after editing them; a
test fails when the generated files are stale (``--check`` does the same from
the command line). When code already uses a name the generated module lacks,
the package cannot import: run the file itself, ``python conventions/generate.py``
(``make generate`` does).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REGISTRY = HERE / "registry"
PY_OUT = HERE / "attributes.py"
MD_OUT = HERE / "README.md"

PRIMITIVE_TYPES = frozenset(
    {"string", "int", "double", "boolean", "string[]", "int[]", "double[]", "boolean[]", "any"}
)
STABILITIES = frozenset({"development", "alpha", "beta", "release_candidate", "stable", "deprecated"})
GROUP_TYPES = frozenset({"attribute_group", "event", "metric"})
INSTRUMENTS = frozenset({"counter", "updowncounter", "histogram", "gauge"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class RegistryError(ValueError):
    """The registry YAML is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Member:
    id: str
    value: str
    brief: str


@dataclass(frozen=True)
class Attribute:
    id: str
    type: str  # a primitive type name, or "enum"
    brief: str
    stability: str
    examples: tuple[Any, ...]
    note: str = ""
    members: tuple[Member, ...] = ()
    origin: str = "runmeter"  # runmeter | upstream | upstream-proposal


@dataclass
class Group:
    id: str
    type: str
    brief: str
    file: str
    name: str = ""  # event name or metric name
    instrument: str = ""
    unit: str = ""
    origin: str = "runmeter"
    attributes: list[Attribute] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)


def _require(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise RegistryError(f"{where}: missing required key {key!r}")
    return entry[key]


def _parse_attribute(raw: dict[str, Any], where: str, origin: str) -> Attribute:
    attr_id = _require(raw, "id", where)
    where = f"{where} attribute {attr_id!r}"
    if not isinstance(attr_id, str) or not _NAME.match(attr_id):
        raise RegistryError(f"{where}: id must be a dotted lowercase name")
    raw_type = _require(raw, "type", where)
    members: tuple[Member, ...] = ()
    if isinstance(raw_type, dict):
        raw_members = _require(raw_type, "members", where)
        if not raw_members:
            raise RegistryError(f"{where}: an enum needs at least one member")
        parsed = []
        for m in raw_members:
            value = _require(m, "value", where)
            if not isinstance(value, str) or not value:
                raise RegistryError(f"{where}: enum member {m.get('id')!r} needs a non-empty string value")
            parsed.append(Member(_require(m, "id", where), value, m.get("brief", "").strip()))
        values = [m.value for m in parsed]
        if len(set(values)) != len(values):
            raise RegistryError(f"{where}: enum member values repeat")
        members = tuple(parsed)
        attr_type = "enum"
    elif raw_type in PRIMITIVE_TYPES:
        attr_type = raw_type
    else:
        raise RegistryError(f"{where}: unknown type {raw_type!r}")
    stability = _require(raw, "stability", where)
    if stability not in STABILITIES:
        raise RegistryError(f"{where}: unknown stability {stability!r}")
    examples = raw.get("examples", ())
    if not isinstance(examples, list):
        examples = [examples]
    return Attribute(
        id=attr_id,
        type=attr_type,
        brief=str(_require(raw, "brief", where)).strip(),
        stability=stability,
        examples=tuple(examples),
        note=str(raw.get("note", "")).strip(),
        members=members,
        origin=origin,
    )


def load_registry(directory: Path = REGISTRY) -> list[Group]:
    """Read and validate every ``*.yaml`` under ``directory``."""
    groups: list[Group] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RegistryError(f"{path.name}: not valid YAML: {exc}") from exc
        for raw in (doc or {}).get("groups", []):
            where = f"{path.name}: group {raw.get('id')!r}"
            gtype = _require(raw, "type", where)
            if gtype not in GROUP_TYPES:
                raise RegistryError(f"{where}: unknown group type {gtype!r}")
            origin = (raw.get("annotations") or {}).get("runmeter", {}).get("origin", "runmeter")
            group = Group(
                id=_require(raw, "id", where),
                type=gtype,
                brief=str(_require(raw, "brief", where)).strip(),
                file=path.name,
                origin=origin,
            )
            if gtype == "event":
                group.name = _require(raw, "name", where)
            elif gtype == "metric":
                group.name = _require(raw, "metric_name", where)
                group.instrument = _require(raw, "instrument", where)
                group.unit = _require(raw, "unit", where)
                if group.instrument not in INSTRUMENTS:
                    raise RegistryError(f"{where}: unknown instrument {group.instrument!r}")
            for raw_attr in raw.get("attributes", []) or []:
                if "ref" in raw_attr:
                    group.refs.append(raw_attr["ref"])
                    continue
                attr = _parse_attribute(raw_attr, where, origin)
                if attr.id in seen:
                    raise RegistryError(f"{where}: {attr.id!r} is already defined in {seen[attr.id]}")
                if origin == "runmeter" and not attr.id.startswith("runmeter."):
                    raise RegistryError(f"{where}: runmeter's own names live under 'runmeter.*', not {attr.id!r}")
                seen[attr.id] = path.name
                group.attributes.append(attr)
            groups.append(group)
    defined = {a.id for g in groups for a in g.attributes}
    for g in groups:
        for ref in g.refs:
            if ref not in defined:
                raise RegistryError(f"{g.file}: group {g.id!r} refers to undefined attribute {ref!r}")
    return groups


def _const(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]", name))


def render_python(groups: list[Group]) -> str:
    out = [
        '"""runmeter semantic conventions: generated from conventions/registry/*.yaml.',
        "",
        "Do not edit by hand; run ``python -m runmeter.conventions.generate``.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from enum import Enum",
        "from typing import Final",
    ]
    for g in groups:
        if g.type == "attribute_group":
            out += ["", "", f"# --- {g.id} ({g.file}) ---"]
            for a in g.attributes:
                out += ["", f"{_const(a.id)}: Final = {a.id!r}", f'"""{a.brief}"""']
                if a.members:
                    out += ["", "", f"class {_camel(a.id)}Values(Enum):"]
                    for m in a.members:
                        out += [f"    {_const(m.id)} = {m.value!r}", f'    """{m.brief}"""']
    out += ["", "", "# --- events ---"]
    for g in groups:
        if g.type == "event":
            out += ["", f"{_const(g.name)}_EVENT: Final = {g.name!r}", f'"""{g.brief}"""']
    out += ["", "", "# --- metrics ---"]
    for g in groups:
        if g.type == "metric":
            c = _const(g.name)
            out += [
                "",
                f"{c}_METRIC: Final = {g.name!r}",
                f'"""{g.brief} ({g.instrument}, {g.unit})"""',
                f"{c}_UNIT: Final = {g.unit!r}",
            ]
    return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(groups: list[Group]) -> str:
    out = [
        "# runmeter semantic conventions",
        "",
        "Generated from `conventions/registry/*.yaml` by `python -m runmeter.conventions.generate`;",
        "do not edit by hand. runmeter's own names live under `runmeter.*`. Official `gen_ai.*`",
        "names are used exactly as the OpenTelemetry GenAI semantic conventions define them;",
        "the few listed here with origin *upstream* are references to that spec, not ours, and",
        "*upstream-proposal* marks the open GenAI cost proposal, written so tools that read it find cost.",
    ]
    for g in groups:
        title = g.name or g.id
        out += ["", f"## `{title}` ({g.type.replace('_', ' ')})", "", _md_cell(g.brief), ""]
        if g.type == "metric":
            out += [f"Instrument: {g.instrument}; unit: `{g.unit}`.", ""]
        if g.origin != "runmeter":
            out += [f"Origin: **{g.origin}**.", ""]
        if g.attributes:
            out += ["| attribute | type | stability | brief | examples |", "| --- | --- | --- | --- | --- |"]
            for a in g.attributes:
                atype = "enum: " + ", ".join(f"`{m.value}`" for m in a.members) if a.members else f"`{a.type}`"
                brief = a.brief + (f" {a.note}" if a.note else "")
                examples = ", ".join(f"`{e}`" for e in a.examples)
                out.append(f"| `{a.id}` | {atype} | {a.stability} | {_md_cell(brief)} | {_md_cell(examples)} |")
        if g.refs:
            out += ["Attributes: " + ", ".join(f"`{r}`" for r in g.refs) + "."]
    return "\n".join(out) + "\n"


def outputs(groups: list[Group] | None = None) -> dict[Path, str]:
    """The generated files and their expected contents."""
    groups = load_registry() if groups is None else groups
    return {PY_OUT: render_python(groups), MD_OUT: render_markdown(groups)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runmeter.conventions.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated files are stale")
    args = parser.parse_args(argv)
    try:
        files = outputs()
    except RegistryError as exc:
        print(f"registry error: {exc}", file=sys.stderr)
        return 2
    stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"stale: {p}", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(files[p], encoding="utf-8")
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
