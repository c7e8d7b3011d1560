"""The layers hold: import-linter's contracts (pyproject.toml, [tool.importlinter]) and the rule it
has no contract for - no package imports another package's private (``_``) modules."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each package's folder and its import name (pyproject.toml, [tool.setuptools.package-dir]).
PACKAGES = {"core": "runmeter.core", "conventions": "runmeter.conventions", "processor": "runmeter.processor",
            "instrumentation": "runmeter.instrumentation", "exporter": "runmeter.exporter",
            "collector": "runmeter.collector", "examples": "runmeter.examples", "runmeter": "runmeter"}


def _installed_layout(tmp: Path) -> Path:
    """The package as it is installed (runmeter/ with its sub-packages inside), made of symlinks:
    import-linter walks folders, and the source keeps each sub-package in a folder of its own."""
    top = tmp / "runmeter"
    top.mkdir()
    for item in (ROOT / "runmeter").iterdir():
        (top / item.name).symlink_to(item)
    for folder, name in PACKAGES.items():
        if name != "runmeter":
            (top / name.split(".", 1)[1]).symlink_to(ROOT / folder)
    return tmp


def test_import_linter_contracts_are_kept(tmp_path: Path) -> None:
    layout = _installed_layout(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(layout)}
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=layout, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


def test_no_package_imports_another_packages_private_modules() -> None:
    found = []
    for folder, name in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                for module in modules:
                    parts = module.split(".")
                    owner = ".".join(parts[:2]) if len(parts) > 1 and parts[0] == "runmeter" else None
                    private = any(p.startswith("_") and not p.startswith("__") for p in parts[2:])
                    if owner in PACKAGES.values() and owner != name and private:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert found == []
