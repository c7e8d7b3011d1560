"""The distribution: layout, wheel, public API."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from decimal import Decimal

import runmeter

SUBPACKAGES = [
    "runmeter",
    "runmeter.conventions",
    "runmeter.processor",
    "runmeter.instrumentation",
    "runmeter.exporter",
    "runmeter.collector",
]

# The documented public API (README, "Python API").
PUBLIC_API = {
    "Budget",
    "BudgetExceeded",
    "ConfigError",
    "Cost",
    "PriceBook",
    "Settings",
    "TokenUsage",
    "__version__",
    "load_settings",
    "outcome",
    "run",
    "tool",
}


def test_public_api_is_exactly_documented() -> None:
    assert set(runmeter.__all__) == PUBLIC_API
    for name in runmeter.__all__:
        assert hasattr(runmeter, name), name


def test_folders_map_into_one_package(root: Path) -> None:
    import runmeter.collector
    import runmeter.conventions
    import runmeter.exporter
    import runmeter.instrumentation
    import runmeter.processor

    for module, folder in [
        (runmeter.conventions, "conventions"),
        (runmeter.processor, "processor"),
        (runmeter.instrumentation, "instrumentation"),
        (runmeter.exporter, "exporter"),
        (runmeter.collector, "collector"),
        (runmeter, "runmeter"),
    ]:
        assert Path(module.__file__).resolve().parent == root / folder


@pytest.mark.slow
def test_built_wheel_installs_into_a_fresh_venv(tmp_path: Path, root: Path) -> None:
    wheel_dir = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(root)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("runmeter-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    # The fresh venv sees our dependencies through a plain path entry (no .pth
    # files of the dev venv run, so runmeter's editable finder stays out), and
    # the wheel itself is unpacked into the fresh site-packages.
    purelib = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(purelib)
    assert "runmeter/conventions/registry/run.yaml" in names
    assert "runmeter/py.typed" in names
    code = (
        "import importlib, pathlib, runmeter\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    m = importlib.import_module(name)\n"
        f"    assert pathlib.Path(m.__file__).is_relative_to({str(purelib)!r}), m.__file__\n"
        "from runmeter.conventions.generate import load_registry\n"
        "assert load_registry()\n"
        "from runmeter.processor import PriceBook, TokenUsage\n"
        "print(PriceBook().price('openai', 'gpt-5.5', TokenUsage.from_openai(57, 21, 32)).total)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert Decimal(out.stdout.strip()) == Decimal("0.000771")
