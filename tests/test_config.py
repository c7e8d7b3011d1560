"""Settings: file, environment, defaults, and their errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runmeter.config import ConfigError, load_settings


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.source is None
    assert s.storage.clickhouse_url == "chdb://.runmeter"
    assert s.runs.loop_threshold == 3
    assert s.pricing.models == {}


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runmeter.toml").write_text(
        '[storage]\nclickhouse_url = "http://127.0.0.1:8123/runs"\n[runs]\nloop_threshold = 5\ngrace_s = 1.5\n'
        '[providers]\n"http://gpu-box:8000" = "vllm"\n'
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={"RUNMETER_LOOP_THRESHOLD": "7"})
    assert s.source == str(tmp_path / "runmeter.toml")
    assert s.storage.clickhouse_url == "http://127.0.0.1:8123/runs"
    assert s.runs.loop_threshold == 7  # environment wins over the file
    assert s.runs.grace_s == 1.5
    assert s.providers == {"http://gpu-box:8000": "vllm"}


def test_runmeter_config_points_at_the_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text("[runs]\nmax_open_runs = 12\n")
    assert load_settings(env={"RUNMETER_CONFIG": str(path)}).runs.max_open_runs == 12


def test_runmeter_config_to_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(env={"RUNMETER_CONFIG": str(tmp_path / "nope.toml")})


def test_bad_environment_value_warns_and_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "runmeter.toml"
    path.write_text("[runs]\nloop_threshold = 4\n")
    with caplog.at_level(logging.WARNING, logger="runmeter.config"):
        s = load_settings(path, env={"RUNMETER_LOOP_THRESHOLD": "many", "RUNMETER_MAX_OPEN_RUNS": "0"})
    assert s.runs.loop_threshold == 4
    assert s.runs.max_open_runs == 10_000
    assert "RUNMETER_LOOP_THRESHOLD" in caplog.text and "RUNMETER_MAX_OPEN_RUNS" in caplog.text


def test_unknown_section_key_names_line(tmp_path: Path) -> None:
    path = tmp_path / "runmeter.toml"
    path.write_text("[runs]\ngrace_s = 1\nloop_treshold = 4\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert (info.value.line, info.value.key) == (3, "runs.loop_treshold")


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "runmeter.toml"
    path.write_bytes(b"[runs]\ngrace_s = \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path, env={})


def test_collector_settings_from_file_environment_and_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "runmeter.toml"
    cfg.write_text('[collector]\nwal_dir = "/var/lib/runmeter/wal"\ngrpc_endpoint = "0.0.0.0:14317"\n')
    env = {"RUNMETER_COLLECTOR_GRPC_ENDPOINT": "127.0.0.1:5317", "RUNMETER_COLLECTOR_WAL_MAX_BYTES": "-1"}
    with caplog.at_level(logging.WARNING):
        s = load_settings(cfg, env=env)
    assert (s.collector.wal_dir, s.collector.grpc_endpoint) == ("/var/lib/runmeter/wal", "127.0.0.1:5317")
    assert s.collector.wal_max_bytes == 1 << 30 and "RUNMETER_COLLECTOR_WAL_MAX_BYTES" in caplog.text  # bad value: warned, default kept
    cfg.write_text('[collector]\nlog_format = "xml"\n')
    with pytest.raises(ConfigError, match="collector.log_format"):
        load_settings(cfg, env={})
