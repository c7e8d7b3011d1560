"""The CLI as a person sees it: in a real pseudo-terminal of 80 and 120 columns, while another
process holds the store, on a store that does not exist, and in its help texts."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.report_store import build, write
from tests.spans import llm, run_root

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
CLI = [sys.executable, "-m", "runmeter.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNMETER_", "OTEL_")) and k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color", RUNMETER_ABANDONED_AFTER_S="60", **extra)
    return env


def in_terminal(args: list[str], columns: int, cwd: Path) -> tuple[int, str]:
    """Run the CLI in a pseudo-terminal of this width; its exit code and screen text (no escapes)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.chdir(cwd)
        os.execvpe(CLI[0], CLI + args, _env())
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))
    # The spinner's frames are erased lines; keep what stays on the screen.
    lines = [ln for ln in text.split("\n") if "reading the store" not in ln]
    return os.waitstatus_to_exitcode(status), "\n".join(lines)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    url = build(tmp)
    # Two runs with the ids runmeter makes (trace id - span id, 49 characters), sharing a prefix
    # of 12 characters: short ids must tell them apart.
    trace_a, trace_b = 0x5EED0000CAFE0000000000000000A001, 0x5EED0000CAFE0000000000000000B002
    spans = [run_root("generated", 1, trace_id=trace_a, end_ms=300), llm(2, 1, "gpt-4o-mini", 2_000, 500, trace_id=trace_a, start_ms=10),
             run_root("generated", 1, trace_id=trace_b, end_ms=300), llm(2, 1, "gpt-4o-mini", 2_000, 500, trace_id=trace_b, start_ms=10)]
    write(url, tmp / "store-spool", spans)
    return url, tmp


@pytest.mark.parametrize("columns", [80, 120])
def test_report_fits_the_terminal(store: tuple[str, Path], columns: int) -> None:
    url, tmp = store
    code, screen = in_terminal(["--store", url, "report", "--since", "7d"], columns, tmp)
    assert code == 0, screen
    lines = [ln for ln in screen.split("\n") if ln.strip()]
    assert max(cell_len(ln.rstrip()) for ln in lines) <= columns, screen
    triage = next(ln for ln in lines if ln.strip().startswith("triage"))
    # Whole cells, readable dollars: 3 runs, $1.00 spent, 1 accepted, $1.00 per accepted run.
    assert triage.split()[:5] == ["triage", "3", "$1.00", "1", "$1.00"], triage
    assert "Cost per accepted run: all spend (rejected, abandoned and failed runs included)" in " ".join(screen.split())
    assert "Cost per accepted task:" in screen
    assert "e-0" not in screen
    header = next(ln for ln in lines if ln.strip().startswith("Group"))
    if columns == 80:
        assert "--wide shows them" in " ".join(screen.split())
    else:
        assert "Rejected" in header and "Abandoned" in header  # more room, more columns


def test_wide_shows_every_column(store: tuple[str, Path]) -> None:
    url, tmp = store
    code, screen = in_terminal(["--store", url, "report", "--since", "7d", "--wide"], 80, tmp)
    assert code == 0, screen
    header = " ".join(ln for ln in screen.split("\n") if "Group" in ln or "Runs" in ln)
    for name in ("Spend", "Rejected", "Abandoned", "No outcome", "p90 run", "Tools/run", "Unpriced calls"):
        assert name in header, header
    assert "more column" not in screen


def test_short_run_ids_are_shown_and_accepted(store: tuple[str, Path]) -> None:
    url, tmp = store
    code, screen = in_terminal(["--store", url, "runs", "--since", "7d", "--name", "generated"], 80, tmp)
    assert code == 0, screen
    lines = [ln for ln in screen.split("\n") if "generated" in ln]
    assert len(lines) == 2 and max(cell_len(ln.rstrip()) for ln in screen.split("\n")) <= 80
    shorts = [ln.split()[0] for ln in lines]
    # The two trace ids share their first 28 characters: the short ids (grown two characters at a
    # time from 10) are 30 characters, unique, and never the whole 49-character id.
    full = {"5eed0000cafe0000000000000000a001-0000000000000001", "5eed0000cafe0000000000000000b002-0000000000000001"}
    assert all(len(s) == 30 and any(f.startswith(s) for f in full) for s in shorts), shorts
    assert len(set(shorts)) == 2
    for s in shorts:
        out = subprocess.run(CLI + ["--store", url, "run", s], cwd=tmp, env=_env(), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        (match,) = [f for f in full if f.startswith(s)]
        assert match in out.stdout
        assert "cost: $0.0006 " in out.stdout  # 2,000 in x $0.15/M + 500 out x $0.60/M
    out = subprocess.run(CLI + ["--store", url, "run", "5eed0000cafe"], cwd=tmp, env=_env(), capture_output=True, text=True)
    assert out.returncode == 1 and "ambiguous" in out.stderr


def test_a_held_store_says_by_whom(store: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = store
    holder = tmp_path / "hold.py"
    holder.write_text(
        "import sys, time\nfrom runmeter.exporter import Store\n"
        "with Store(sys.argv[1]).session():\n    print('holding', flush=True)\n    time.sleep(4)\n")
    proc = subprocess.Popen([sys.executable, str(holder), url], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        started = time.monotonic()
        out = subprocess.run(CLI + ["--store", url, "runs", "--since", "7d"], env=_env(), capture_output=True, text=True, timeout=120)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert out.returncode == 0, out.stderr
    assert f"waiting for the store held by pid {proc.pid} (python hold.py)" in out.stderr
    assert time.monotonic() - started >= 1  # it did wait, and then answered
    assert "triage" in out.stdout


def test_a_read_of_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "store"
    for args in (["runs"], ["report"], ["run", "abc123"], ["ui", "--port", "0"]):
        out = subprocess.run(CLI + ["--store", f"chdb://{missing}", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert f"no store at {missing}" in " ".join(out.stderr.split())
    assert not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_help_texts_show_the_extras_to_install() -> None:
    for command, extra in (("collector", "runmeter[collector]"), ("ui", "runmeter[ui]")):
        out = subprocess.run(CLI + [command, "--help"], env=_env(), capture_output=True, text=True)
        assert out.returncode == 0 and f"pip install '{extra}'" in out.stdout, out.stdout
