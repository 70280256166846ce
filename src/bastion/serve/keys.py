"""API keys for the gateway: shown once at creation, stored hashed, scoped, revocable.

A token is ``bst_{key_id}_{secret}``. The key id is public (it names the key in the audit log, the
limits and the metrics); the secret is 32 random bytes (``secrets.token_urlsafe``), so its SHA-256 is
enough to store: no password stretching is needed for a secret nobody could guess. Only that hash is
stored, and a presented secret is compared with ``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bastion.errors import GatewayError
from bastion.serve.db import DEFAULT_DB, check_prefix, create_tables, engine_for, transaction

TOKEN_PREFIX = "bst"
_TOKEN = re.compile(r"^bst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_SCOPE_FIELDS = ("models", "output", "rate", "burst", "daily_quota", "on_input_flag")
ON_INPUT_FLAG = ("flag", "reject")  # what a request with a row an input detector flags gets


@dataclass(frozen=True)
class Scope:
    """What a key may do: which models, which output policy, how fast and how much, and what happens to
    its requests when an in-line input detector flags a row (``flag``: answered and recorded with the
    flag; ``reject``: refused, nothing released)."""

    models: tuple[str, ...] = ("*",)
    output: str = "labels"
    rate: float = 5.0
    burst: int = 10
    daily_quota: int | None = 10_000
    on_input_flag: str = "flag"

    def __post_init__(self) -> None:
        models = (self.models,) if isinstance(self.models, str) else tuple(self.models)
        if not models or any(not isinstance(m, str) or not m.strip() for m in models):
            raise GatewayError(f"scope models must be model names or '*', got {self.models!r}")
        object.__setattr__(self, "models", tuple(m.strip() for m in models))
        object.__setattr__(self, "output", _check_output(self.output))
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise GatewayError(f"scope rate must be a number of requests per second, got {self.rate!r}")
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise GatewayError(f"scope rate must be > 0 requests per second, got {self.rate!r}")
        object.__setattr__(self, "rate", float(self.rate))
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise GatewayError(f"scope burst must be a whole number >= 1, got {self.burst!r}")
        quota = self.daily_quota
        if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 1):
            raise GatewayError(f"scope daily_quota must be a whole number >= 1 or None, got {quota!r}")
        if self.on_input_flag not in ON_INPUT_FLAG:
            raise GatewayError(
                f"scope on_input_flag must be one of {', '.join(ON_INPUT_FLAG)}, got {self.on_input_flag!r}"
            )

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "models": list(self.models),
            "output": self.output,
            "rate": self.rate,
            "burst": self.burst,
            "daily_quota": self.daily_quota,
        }
        # written only when not the default: the stored JSON of every other key stays as it was
        if self.on_input_flag != "flag":
            d["on_input_flag"] = self.on_input_flag
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scope:
        unknown = sorted(set(d) - set(_SCOPE_FIELDS))
        if unknown:
            raise GatewayError(
                f"unknown scope field(s) {', '.join(unknown)}; valid fields: {', '.join(_SCOPE_FIELDS)}"
            )
        values = dict(d)
        if "models" in values and not isinstance(values["models"], str):
            values["models"] = tuple(values["models"])
        return cls(**values)


def _check_output(spec: Any) -> str:
    from bastion.defenses.output_policy import OutputPolicy
    from bastion.errors import DefenseError

    if not isinstance(spec, str):
        raise GatewayError(f"scope output must be an output policy spec such as 'labels', got {spec!r}")
    try:
        OutputPolicy.parse(spec)
    except DefenseError as exc:
        raise GatewayError(f"scope output: {exc}") from None
    return spec.strip().lower()


@dataclass(frozen=True)
class ApiKey:
    """A key as stored, without its secret. Times are epoch seconds."""

    key_id: str
    name: str
    scope: Scope
    created: float
    revoked: float | None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scope": self.scope.to_dict(),
            "created": self.created,
            "revoked": self.revoked,
            "active": self.active,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class KeyStore:
    """API keys in a database (``url``: see :func:`bastion.serve.db.engine_for`); creates its table if
    missing. ``prefix`` names the table (``{prefix}api_keys``)."""

    def __init__(self, url: str = DEFAULT_DB, *, prefix: str = "bastion_") -> None:
        self.url = url
        self.engine = engine_for(url)
        meta = sa.MetaData()
        self.table = sa.Table(
            f"{check_prefix(prefix)}api_keys",
            meta,
            sa.Column("key_id", sa.String(16), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("scope", sa.Text, nullable=False),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("revoked", sa.Float, nullable=True),
            sa.Column("secret_sha256", sa.String(64), nullable=False),
        )
        create_tables(self.engine, meta, url)

    def create(self, name: str, scope: Scope) -> tuple[ApiKey, str]:
        """A new key and its token. The token is returned once and never stored: keep it now."""
        name = str(name).strip()
        if not name or len(name) > 200:
            raise GatewayError(f"a key needs a name of 1 to 200 characters, got {name!r}")
        key = ApiKey(secrets.token_hex(8), name, scope, time.time(), None)
        secret = secrets.token_urlsafe(32)
        row = {
            "key_id": key.key_id,
            "name": key.name,
            "scope": json.dumps(scope.to_dict(), sort_keys=True),
            "created": key.created,
            "revoked": None,
            "secret_sha256": _digest(secret),
        }
        with self._db() as conn:
            conn.execute(self.table.insert().values(**row))
        return key, f"{TOKEN_PREFIX}_{key.key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        query = sa.select(self.table).order_by(self.table.c.created, self.table.c.key_id)
        with self._db() as conn:
            return [self._key(row) for row in conn.execute(query)]

    def get(self, key_id: str) -> ApiKey:
        row = self._row(key_id)
        if row is None:
            raise GatewayError(f"no API key {key_id!r}; list the keys with 'bastion keys list'")
        return self._key(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good (its requests get 403 from then on); revoking twice keeps the first time."""
        t = self.table
        with self._db() as conn:
            conn.execute(
                t.update().where(t.c.key_id == key_id, t.c.revoked.is_(None)).values(revoked=time.time())
            )
        return self.get(key_id)

    def authenticate(self, token: str) -> ApiKey | None:
        """The key a token belongs to; None when it is malformed, unknown or its secret is wrong. A
        revoked key is returned (``active`` False) so that the caller can answer 403 rather than 401."""
        match = _TOKEN.match(token) if isinstance(token, str) else None
        if match is None:
            return None
        key_id, secret = match.groups()
        row = self._row(key_id)
        presented = _digest(secret)
        if row is None or not hmac.compare_digest(row.secret_sha256, presented):
            return None
        return self._key(row)

    def close(self) -> None:
        self.engine.dispose()

    def _row(self, key_id: str) -> Any:
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            return None
        with self._db() as conn:
            return conn.execute(sa.select(self.table).where(self.table.c.key_id == key_id)).first()

    def _db(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine, self.url)

    @staticmethod
    def _key(row: Any) -> ApiKey:
        return ApiKey(row.key_id, row.name, Scope.from_dict(json.loads(row.scope)), row.created, row.revoked)
