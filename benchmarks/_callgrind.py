"""Counting instructions with ``valgrind --tool=callgrind``: the benchmarks' answer to a noisy machine.

A benchmark re-runs itself as a child under callgrind with collection off while it imports
and warms up. The child prints ``ready`` and waits; collection is switched on with
``callgrind_control``; the child does exactly the measured work, prints ``done`` and waits
again; collection is switched off, and the total instructions are read from the output file.
Every thread of the child counts (background exporters and processors included).
``PYTHONHASHSEED=0`` gives every child the same dict layouts, so repeats agree to the instruction.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence

__all__ = ["done", "instructions", "ready"]


def instructions(argv: Sequence[str]) -> int:
    """Instructions the child ``python argv...`` executes between its ``ready`` and its ``done``."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        child = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable, *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready", f"{' '.join(argv)}: the child did not start"
        subprocess.run(["callgrind_control", "--instr=on", str(child.pid)], check=True, capture_output=True)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        subprocess.run(["callgrind_control", "--instr=off", str(child.pid)], check=True, capture_output=True)
        child.stdin.write("exit\n")
        child.stdin.flush()
        child.wait(600)
        with open(out) as f:
            found = re.search(r"^totals: (\d+)", f.read(), re.M)
        assert found is not None, "callgrind wrote no totals"
        return int(found.group(1))


def ready() -> None:
    """In the child: set up and warmed up; wait for collection to be switched on."""
    print("ready", flush=True)
    sys.stdin.readline()


def done() -> None:
    """In the child: the measured work is done; wait for collection to be switched off."""
    print("done", flush=True)
    sys.stdin.readline()
