"""Shared fixtures. Every test runs with the network closed beyond 127.0.0.1."""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The agent-framework tests run in .venv-frameworks (make test installs the frameworks there and runs
# tests/frameworks with it); the other environments do not have LangGraph or the Agents SDK.
collect_ignore = [] if importlib.util.find_spec("langgraph") is not None else ["frameworks"]


class NetworkBlocked(RuntimeError):
    pass


def _allowed(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths and the like


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that tries to reach beyond 127.0.0.1."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: object) -> object:
        if not _allowed(address):
            raise NetworkBlocked(f"test tried to reach {address!r}; tests talk only to 127.0.0.1")
        return real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: object) -> object:
        if not _allowed(address):
            raise NetworkBlocked(f"test tried to reach {address!r}; tests talk only to 127.0.0.1")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield


@pytest.fixture
def root() -> Path:
    return ROOT


# Shared fixtures (defined next to their helpers): available to every test module.
from tests.instrumented import rig  # noqa: E402, F401
from tests.stores import store_rig  # noqa: E402, F401
