"""Bearer tokens for the collector, from a tokens file; TLS contexts for both ports.

The tokens file is TOML (mount it from a Secret)::

    [[tokens]]
    name = "checkout-agents"          # shown in logs, never the token
    sha256 = "9f86d081884c7d65..."    # hex SHA-256 of the token (or `token = "..."` in clear)
    project = "checkout"              # optional: spans sent with it are stamped with this
                                      # project and may not claim another

Without a tokens file the collector takes requests without a token (for a
private network or a Collector in front that authenticates).
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from runmeter.processor import ConfigError
from runmeter.core import read_toml, validation_error

__all__ = ["Principal", "TokenAuth", "Unauthenticated", "server_ssl_context"]


class Unauthenticated(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    name: str
    project: str | None


class _Token(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    token: str | None = None
    sha256: str | None = None
    project: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> _Token:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give exactly one of `token` or `sha256`")
        if self.sha256 is not None and (len(self.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in self.sha256)):
            raise ValueError("`sha256` is the 64 hex digits of the token's SHA-256")
        return self


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: list[_Token]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuth:
    """Looks a presented token up by its SHA-256 (the file need not hold tokens in clear)."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self._by_digest = principals

    @property
    def binds_projects(self) -> bool:
        """Some token is bound to a project: traces and runs then have owners (see _ownership)."""
        return any(p.project for p in self._by_digest.values())

    @classmethod
    def from_file(cls, path: str | Path) -> TokenAuth:
        path = Path(path)
        data, text = read_toml(path)
        try:
            parsed = _TokensFile.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, path, text, ()) from None
        if not parsed.tokens:
            raise ConfigError(path, None, "tokens", "no [[tokens]]: every request would be refused")
        principals = {}
        for t in parsed.tokens:
            digest = t.sha256.lower() if t.sha256 else _digest(t.token or "")
            principals[digest] = Principal(t.name, t.project)
        return cls(principals)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` value; raises Unauthenticated."""
        if not authorization:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        principal = self._by_digest.get(_digest(token.strip()))
        if principal is None:
            raise Unauthenticated("unknown token")
        return principal


def server_ssl_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """TLS for the HTTP port; with ``client_ca``, clients must present a certificate it signed."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
