"""The distribution: layout, wheel, public API."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import shutil
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
    # Built from the files git tracks (as from an sdist): a build/ left in the working tree by an
    # earlier build would otherwise put files that no longer exist into the wheel.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (root / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(source)],
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
    assert any(n.startswith("runmeter/collector/_otlpscan.") and n.endswith(".so") for n in names)  # the receiver's C check
    assert any(n.startswith("runmeter/exporter/_speedups.") and n.endswith(".so") for n in names)  # the rows' attribute maps
    assert any(n.startswith("runmeter/exporter/_blocks.") and n.endswith(".so") for n in names)  # the Native block writer
    assert "runmeter/py.typed" in names
    code = (
        "import importlib, pathlib, runmeter\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    m = importlib.import_module(name)\n"
        f"    assert pathlib.Path(m.__file__).is_relative_to({str(purelib)!r}), m.__file__\n"
        "import runmeter.collector._otlpscan, runmeter.exporter._speedups, runmeter.exporter._blocks\n"
        "from runmeter.conventions.generate import load_registry\n"
        "assert load_registry()\n"
        "from runmeter.processor import PriceBook, TokenUsage\n"
        "print(PriceBook().price('openai', 'gpt-5.5', TokenUsage.from_openai(57, 21, 32)).total)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert Decimal(out.stdout.strip()) == Decimal("0.000771")
    # The demo runs from the wheel alone: its agents and the simulator are installed with it.
    assert "runmeter/examples/agent.py" in names and "runmeter/examples/runmeter.toml" in names
    assert "runmeter/testing.py" in names and not any(n.startswith("runmeter/simulator") for n in names)
    demo_dir = tmp_path / "elsewhere"
    demo_dir.mkdir()
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "RUNMETER_"))}
    out = subprocess.run([str(py), "-m", "runmeter.cli", "demo"], cwd=demo_dir, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (demo_dir / "report.html").exists() and "Cost per accepted run" in out.stdout
    # The commands the demo suggests work as typed (`runmeter` is `python -m runmeter.cli` here:
    # the wheel is unpacked, not pip-installed, so there is no console script).
    suggested = [line.split() for line in out.stdout.splitlines() if line.startswith("  runmeter --store")]
    assert [c[3] for c in suggested] == ["runs", "run", "ui"], out.stdout[-2000:]
    for command in suggested[:2]:
        ran = subprocess.run([str(py), "-m", "runmeter.cli", *command[1:]], cwd=demo_dir, env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0 and "gpt-" in ran.stdout, ran.stdout + ran.stderr
    assert "runmeter/static/ui.js" in names
    ui = subprocess.Popen([str(py), "-m", "runmeter.cli", *suggested[2][1:], "--port", "0"], cwd=demo_dir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert ui.stdout is not None
        url = ui.stdout.readline().split()[2]
        assert url.startswith("http://127.0.0.1:")
        import urllib.request

        with urllib.request.urlopen(url + "runs") as page:
            assert "loop" in page.read().decode()  # the demo's looping run is on the list
        with urllib.request.urlopen(url + "static/ui.js") as script:
            assert b"fragment" in script.read()
    finally:
        ui.terminate()
        ui.wait(timeout=30)
        if ui.stdout is not None:
            ui.stdout.close()
    # Grafana's files, exported anywhere; the source-tree generator refuses to write into site-packages.
    exported = tmp_path / "grafana"
    ran = subprocess.run([str(py), "-m", "runmeter.cli", "grafana", "export", str(exported)], cwd=demo_dir, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert (exported / "dashboards" / "overview.json").is_file()
    provider = (exported / "provisioning" / "dashboards" / "runmeter.yaml").read_text()
    assert str(exported / "dashboards") in provider
    assert "uid: runmeter-clickhouse" in (exported / "provisioning" / "datasources" / "runmeter.yaml").read_text()
    assert (exported / "provisioning" / "alerting" / "alerts.yaml").is_file()
    ran = subprocess.run([str(py), "-m", "runmeter.grafana"], cwd=demo_dir, env=env, capture_output=True, text=True)
    assert ran.returncode == 2 and "runmeter grafana export" in ran.stderr
    assert not (purelib / "deploy").exists()


def test_the_image_copies_every_package_and_the_build_files(root: Path) -> None:
    """The Dockerfile (no Docker engine here to build it) copies each folder pyproject maps to a
    package, and what the build reads: a folder left out fails `pip wheel` in the image."""
    import tomllib

    dirs = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    copied: set[str] = set()
    for line in (root / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(line.split()[1:-1])
    assert dirs <= copied, f"not copied into the image: {sorted(dirs - copied)}"
    assert {"pyproject.toml", "setup.py", "README.md"} <= copied
