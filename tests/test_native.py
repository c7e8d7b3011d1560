"""Native blocks encoded away from the inserting process, and what encoding pulls into a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import json, sys
from runmeter.exporter import OUTCOME_COLUMNS, NativeEncoder, Store, column_types, insert_blocks, without_dataframes
if sys.argv[2] == "skip":
    without_dataframes()
store = Store("chdb://" + sys.argv[1])
with store.session() as client:
    types = column_types(client.query(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() AND table = 'runmeter_outcomes'").result_rows)
    block = NativeEncoder(types).encode("runmeter_outcomes", OUTCOME_COLUMNS, [["r1", "accepted", "", 1, "api"]])
    insert_blocks(client, "t", {"runmeter_outcomes": (OUTCOME_COLUMNS, block)})
    client.insert("runmeter_outcomes", [["r2", "rejected", "", 2, "api"]], column_names=OUTCOME_COLUMNS)
    rows = client.query("SELECT RunId, Outcome FROM runmeter_outcomes ORDER BY RunId").result_rows
store.close()
print(json.dumps({"rows": [list(r) for r in rows], "pandas": "pandas" in sys.modules}))
"""


def _inserts(tmp: Path, mode: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp / mode), mode], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_collectors_inserts_do_not_import_pandas(tmp_path: Path) -> None:
    """clickhouse-connect checks insert data against pandas' DataFrame, importing pandas (chDB's
    dependency, so installed) on the first insert: 0.6-1 s of CPU and ~80 MB in each collector process.
    ``without_dataframes`` keeps it out; both insert paths still store their rows."""
    control = _inserts(tmp_path, "default")
    skipped = _inserts(tmp_path, "skip")
    assert control["pandas"] is True  # what the collector's processes would pay without it
    assert skipped["pandas"] is False
    assert control["rows"] == skipped["rows"] == [["r1", "accepted"], ["r2", "rejected"]]
