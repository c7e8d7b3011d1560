"""Reading ``runmeter.toml`` with errors that name the file, the line and the key."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from pydantic import ValidationError

__all__ = ["CONFIG_FILENAME", "ConfigError", "line_of", "read_toml", "validation_error"]

CONFIG_FILENAME = "runmeter" ".toml"  # a file name, split so it is not mistaken for an attribute name


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message says where and why."""

    def __init__(self, path: str | Path | None, line: int | None, key: str | None, message: str) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        where = self.path or "configuration"
        if line is not None:
            where += f":{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; a syntax error becomes a ConfigError with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, None, f"not UTF-8 text: {exc.reason}") from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)  # Python 3.14+; older ones say it in the message
        if line is None and (m := re.search(r"\(at line (\d+), column \d+\)", str(exc))):
            line = int(m.group(1))
        msg = getattr(exc, "msg", None) or re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(path, line, None, f"not valid TOML: {msg}") from exc


def _flatten(d: Any, prefix: tuple[str, ...] = ()) -> tuple[str, ...]:
    if isinstance(d, dict) and len(d) == 1:
        (k, v), = d.items()
        return _flatten(v, prefix + (k,))
    return prefix


def line_of(text: str, keypath: Sequence[str | int], base: Sequence[str] = ()) -> int | None:
    """1-based line where ``base + keypath`` (or its longest known prefix) is set."""
    want = tuple(base) + tuple(str(k) for k in keypath if not isinstance(k, int))
    table: tuple[str, ...] = ()
    best: tuple[int, int] | None = None  # (matched length, line)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            header = line.split("#", 1)[0].strip()
            inner = header.strip("[]").strip()
            try:
                path = _flatten(tomllib.loads(f"[{inner}]\n"))
            except tomllib.TOMLDecodeError:
                continue
            table = path
            full = path
        else:
            try:
                parsed = tomllib.loads(line)
            except tomllib.TOMLDecodeError:
                continue
            full = table + _flatten(parsed)
        n = 0
        while n < min(len(full), len(want)) and full[n] == want[n]:
            n += 1
        if n and (best is None or n > best[0]):
            best = (n, number)
            if n == len(want):
                break
    return best[1] if best else None


def validation_error(exc: ValidationError, path: Path | None, text: str, base: Sequence[str] = ()) -> ConfigError:
    """The first pydantic error, placed on its line."""
    err = exc.errors()[0]
    loc = [k for k in err["loc"] if isinstance(k, (str, int))]
    key = ".".join(list(base) + [str(k) for k in loc])
    line = line_of(text, loc, base) if text else None
    return ConfigError(path, line, key, err["msg"])
