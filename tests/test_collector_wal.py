"""The collector's write-ahead log on its own: durability, replay, release, torn tails, group commit, bounds."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from runmeter.collector import WriteAheadLog
from runmeter.collector._wal import LogFull


def _append_all(wal: WriteAheadLog, payloads: list[bytes]) -> list[int]:
    return [wal.append(p).result(timeout=10) for p in payloads]


def test_records_survive_a_restart_and_only_unreleased_ones_replay(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=64)  # a few records per segment: several segments
    seqs = _append_all(wal, [f"request {i}".encode() for i in range(10)])
    assert seqs == list(range(1, 11))
    for seq in (1, 2, 3, 5):  # 4 is still being processed: the watermark stops at 3
        wal.release(seq)
    assert wal.watermark == 3 and wal.pending == 6
    wal.close()
    again = WriteAheadLog(tmp_path, segment_bytes=64)
    assert [r.seq for r in again.replay] == [4, 5, 6, 7, 8, 9, 10]  # 5 was released above 4: replayed, deduplicated downstream
    assert again.replay[0].payload == b"request 3"
    assert again.append(b"next").result(timeout=10) == 11  # numbering goes on
    again.close()


def test_released_segments_are_deleted(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=64)
    _append_all(wal, [b"x" * 40 for _ in range(8)])
    segments = sorted(tmp_path.glob("*.wal"))
    assert len(segments) >= 4
    for seq in range(1, 9):
        wal.release(seq)
    assert len(list(tmp_path.glob("*.wal"))) == 1  # only the one still being appended to
    assert wal.pending == 0 and wal.pending_bytes == 0
    wal.close()
    assert WriteAheadLog(tmp_path).replay == []


def test_a_torn_tail_is_cut_and_never_replayed(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    _append_all(wal, [b"first", b"second"])
    wal.close()
    (segment,) = tmp_path.glob("*.wal")
    with open(segment, "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage")  # a record the process was writing when it died
    size_before = segment.stat().st_size
    again = WriteAheadLog(tmp_path)
    assert [r.payload for r in again.replay] == [b"first", b"second"]
    assert segment.stat().st_size == size_before - 11
    assert again.append(b"third").result(timeout=10) == 3
    again.close()
    assert [r.payload for r in WriteAheadLog(tmp_path).replay] == [b"first", b"second", b"third"]


def test_a_crash_between_checkpoint_and_segment_removal_recovers(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=32)
    _append_all(wal, [b"a" * 30, b"b" * 30, b"c" * 30])
    wal.close()
    (tmp_path / "checkpoint").write_text("2")  # written; the segments of 1 and 2 not yet deleted
    again = WriteAheadLog(tmp_path, segment_bytes=32)
    assert [r.payload for r in again.replay] == [b"c" * 30]
    assert len(list(tmp_path.glob("*.wal"))) == 1  # the dead segments were removed on recovery
    again.close()


def test_a_damaged_old_segment_is_skipped_not_fatal(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=32)
    _append_all(wal, [b"a" * 30, b"b" * 30, b"c" * 30])
    wal.close()
    first = sorted(tmp_path.glob("*.wal"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # the CRC no longer matches
    first.write_bytes(bytes(data))
    again = WriteAheadLog(tmp_path, segment_bytes=32)
    assert again.damaged == 1 and [r.payload for r in again.replay] == [b"b" * 30, b"c" * 30]
    again.close()


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])
    wal = WriteAheadLog(tmp_path)
    results: list[int] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        seq = wal.append(f"req-{i}".encode()).result(timeout=10)
        with lock:
            results.append(seq)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    assert sorted(results) == list(range(1, 201))
    assert 1 <= len(syncs) < 200  # group commit: one fdatasync covers every append waiting at that moment
    assert len(WriteAheadLog(tmp_path).replay) == 200


def test_records_pinning_the_log_are_named_and_read_back(tmp_path: Path) -> None:
    """Past two segments, the few unreleased records of the oldest one are named (to be written
    again at the tail), and read back intact; a backlog - most of it unreleased - is not."""
    wal = WriteAheadLog(tmp_path, segment_bytes=1000)
    payloads = [bytes([i]) * 50 for i in range(1, 51)]  # 16 records a segment: four segments
    seqs = [wal.append(p).result(timeout=10) for p in payloads]
    assert wal.pinning() == []  # all unreleased: a backlog, not a few held records
    for seq in seqs[1:]:
        wal.release(seq)
    assert wal.pinning() == [seqs[0]]
    assert wal.read(seqs[0]) == payloads[0]
    wal.release(seqs[0])
    assert wal.pinning() == [] and len(list(tmp_path.glob("*.wal"))) == 1  # only the active segment is left
    wal.close()


def test_the_log_refuses_past_its_bound_and_takes_again_after_release(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=100)
    _append_all(wal, [b"x" * 30, b"y" * 30])  # 2 x (16-byte header + 30)
    assert wal.pending_bytes == 92
    with pytest.raises(LogFull, match="92 unreleased bytes"):
        wal.append(b"z" * 30)
    wal.release(1)
    assert wal.pending_bytes == 46
    assert wal.append(b"z" * 30).result(timeout=10) == 3
    assert wal.pending_bytes == 92
    wal.close()
    with pytest.raises(LogFull, match="closed"):
        wal.append(b"after close")


def test_a_prefix_is_written_as_part_of_its_record(tmp_path: Path) -> None:
    """``append(payload, prefix=...)`` logs ``prefix + payload``, one record: read back, replayed and
    checked (CRC) as one, counted whole against the bound; a bit flipped in the prefix on disk is
    found as damage."""
    wal = WriteAheadLog(tmp_path, max_bytes=1000, segment_bytes=20)  # a segment each
    first = wal.append(b"request one", prefix=b"\x05\x00alpha").result(timeout=10)
    second = wal.append(b"request two").result(timeout=10)
    assert wal.read(first) == b"\x05\x00alpharequest one" and wal.read(second) == b"request two"
    assert wal.pending_bytes == (16 + 7 + 11) + (16 + 11)
    with pytest.raises(LogFull):  # the prefix counts: 61 held + 16 + 900 + 30 > 1000, 900 + 16 + 61 fits without it
        wal.append(b"x" * 900, prefix=b"p" * 30)
    wal.close()
    again = WriteAheadLog(tmp_path)
    assert [(r.seq, r.payload) for r in again.replay] == [(first, b"\x05\x00alpharequest one"), (second, b"request two")]
    again.close()
    segment = min(tmp_path.glob("*.wal"))  # the first record's: an older segment, damage there is skipped
    raw = bytearray(segment.read_bytes())
    # The format is the documented one whichever CRC-32 implementation wrote it (zlib-ng's, or zlib's).
    assert raw[:16] == struct.pack("<IIQ", 18, zlib.crc32(b"\x05\x00alpharequest one"), first)
    raw[16 + 3] ^= 0x01  # in "alpha"
    segment.write_bytes(bytes(raw))
    damaged = WriteAheadLog(tmp_path)
    assert [r.payload for r in damaged.replay] == [b"request two"] and damaged.damaged == 1
    damaged.close()


def test_a_group_of_records_is_written_whole_through_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may write less than asked (a signal, a full disk's last blocks): every byte still
    goes out, in order, however the parts of a group (past writev's 1,024 at once) are cut."""
    calls: list[int] = []
    queued = threading.Event()
    real = os.writev

    def short_writev(fd: int, buffers: list[memoryview]) -> int:  # at most 7 bytes a call
        queued.wait(30)  # the first record's group waits while the others queue up behind it
        calls.append(len(buffers))
        return real(fd, [b"".join(bytes(b) for b in buffers)[:7]])

    monkeypatch.setattr(os, "writev", short_writev)
    wal = WriteAheadLog(tmp_path)
    payloads = [f"record {i} ".encode() * (i % 5 + 1) for i in range(800)]
    # Two groups: what the writer took first (held in its first writev), and the rest. One of them
    # holds 400 records or more: 1,200 parts or more with the headers and prefixes.
    futures = [wal.append(p, prefix=bytes([i % 3])) for i, p in enumerate(payloads)]
    queued.set()
    assert [f.result(timeout=60) for f in futures] == list(range(1, 801))
    assert max(calls) == 1024  # that group went out in writev-sized slices
    wal.close()
    assert [r.payload for r in WriteAheadLog(tmp_path).replay] == [bytes([i % 3]) + p for i, p in enumerate(payloads)]


def _in_a_process(script: str, *args: str) -> tuple[dict[str, Any], str]:
    """Run ``script`` (it sets a resource limit: in a process of its own); its last line of output
    read as JSON, and what it logged."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


_DISK_ERROR_SCRIPT = r"""
import json, resource, signal, sys
from runmeter.collector import WriteAheadLog
from runmeter.collector._wal import LogFull

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of a signal
wal = WriteAheadLog(sys.argv[1], segment_bytes=4000)
seqs = [wal.append(bytes([i]) * 1000).result() for i in range(1, 4)]  # 3 records of 1,016 bytes: 3,048
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (3500, hard))  # the disk fills: the 4th record is written in part
try:
    wal.append(b"\x04" * 1000).result()
    refused = True
except LogFull:
    refused = True
else:
    refused = False
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
seqs += [wal.append(bytes([i]) * 1000).result() for i in range(5, 11)]
if sys.argv[2] == "release":  # processed in this process's life: the watermark passes the refused record
    for seq in seqs:
        wal.release(seq)
watermark = wal.watermark
wal.close()
print(json.dumps({"refused": refused, "acknowledged": seqs, "watermark": watermark}))
"""


def test_a_write_the_disk_refused_loses_nothing_after_it_and_does_not_hold_the_log_back(tmp_path: Path) -> None:
    """A write that fails part way (here the file size limit, EFBIG, as a full disk gives ENOSPC)
    refuses its request. What is acknowledged after it is read back whole after a restart (it
    is not written behind the torn record, where recovery stops reading a segment), and once
    those are released the watermark passes the refused record and the segments are deleted."""
    def run(directory: Path, mode: str) -> dict[str, Any]:
        result, _ = _in_a_process(_DISK_ERROR_SCRIPT, str(directory), mode)
        assert result["refused"] is True
        assert result["acknowledged"] == [1, 2, 3, 5, 6, 7, 8, 9, 10]
        return result

    assert run(tmp_path / "released", "release")["watermark"] == 10
    assert len(list((tmp_path / "released").glob("*.wal"))) == 1  # only the one still being appended to
    acknowledged = run(tmp_path / "kept", "keep")["acknowledged"]
    wal = WriteAheadLog(tmp_path / "kept", segment_bytes=4000)  # restarted
    assert [(r.seq, r.payload) for r in wal.replay] == [(seq, bytes([seq]) * 1000) for seq in acknowledged]
    assert wal.damaged == 0
    for seq in acknowledged:
        wal.release(seq)
    assert wal.watermark == 10
    assert list((tmp_path / "kept").glob("*.wal")) == []  # every segment below it deleted (none written since)
    wal.close()


_NO_FILES_SCRIPT = r"""
import json, os, resource, sys
from runmeter.collector import WriteAheadLog
from runmeter.collector._wal import LogFull

wal = WriteAheadLog(sys.argv[1], segment_bytes=2500)
seqs = [wal.append(bytes([i]) * 1000).result() for i in range(1, 4)]  # 3,048 bytes: the next record rolls
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) - 1, hard))  # no descriptor to spare
try:
    wal.append(b"\\x04" * 1000).result()
    refused = False
except LogFull:
    refused = True
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
seqs += [wal.append(bytes([i]) * 1000).result() for i in range(5, 8)]
wal.close()
print(json.dumps({"refused": refused, "acknowledged": seqs}))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts the process's descriptors in /proc")
def test_a_segment_the_log_cannot_open_is_refused_and_the_next_write_opens_one(tmp_path: Path) -> None:
    """Rolling to a new segment when no descriptor is left (EMFILE: a collector out of files) refuses
    that request; the next write opens its segment and goes on, and everything acknowledged reads
    back after a restart (the log does not keep a closed descriptor, whose number a socket may reuse)."""
    result, _ = _in_a_process(_NO_FILES_SCRIPT, str(tmp_path))
    assert result == {"refused": True, "acknowledged": [1, 2, 3, 5, 6, 7]}
    wal = WriteAheadLog(tmp_path, segment_bytes=2500)
    assert [(r.seq, r.payload) for r in wal.replay] == [(seq, bytes([seq]) * 1000) for seq in result["acknowledged"]]
    assert wal.damaged == 0
    wal.close()


_CHECKPOINT_SCRIPT = r"""
import json, resource, signal, sys
from pathlib import Path
from runmeter.collector import WriteAheadLog

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
d = Path(sys.argv[1])
wal = WriteAheadLog(d, segment_bytes=2500)
seqs = [wal.append(bytes([i]) * 1000).result() for i in range(1, 8)]  # 7 records in 3 segments
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # the disk is full: not even the checkpoint fits
for seq in seqs[:6]:
    wal.release(seq)  # must not raise: the caller is a worker's call loop
full = {"watermark": wal.watermark, "segments": len(list(d.glob("*.wal"))), "checkpoint": (d / "checkpoint").read_text() if (d / "checkpoint").exists() else ""}
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
wal.release(seqs[6])
room = {"watermark": wal.watermark, "segments": len(list(d.glob("*.wal"))), "checkpoint": (d / "checkpoint").read_text()}
wal.close()
print(json.dumps({"full": full, "room": room}))
"""


def test_a_checkpoint_the_disk_refuses_keeps_the_segments_and_raises_nothing(tmp_path: Path) -> None:
    """Releasing records when the disk refuses even the checkpoint (EFBIG, as ENOSPC) raises nothing
    into the caller (a worker's call loop, which an OSError would end) and deletes no segment the
    checkpoint on disk does not cover; once the disk takes writes again, the next release writes it
    and deletes them."""
    result, logged = _in_a_process(_CHECKPOINT_SCRIPT, str(tmp_path))
    assert result["full"]["watermark"] == 6 and result["full"]["segments"] == 3 and result["full"]["checkpoint"] in ("", "0")
    assert result["room"] == {"watermark": 7, "segments": 1, "checkpoint": "7"}
    assert logged.count("cannot write the log's checkpoint") == 1
