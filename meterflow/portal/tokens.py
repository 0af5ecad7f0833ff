"""Per-participant API tokens for machines ("client middlewares"): read-only, one participant
each, revocable. The warehouse keeps only a SHA-256 of each secret; the token is shown once.

A token reads `mft_<token id>_<secret>`: the id finds the row, the secret (32 random bytes) is
checked against its hash in constant time. A slow password hash buys nothing for a secret with
256 bits of entropy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from meterflow.common.errors import MeterflowError
from meterflow.configuration.ids import check_identifier
from meterflow.warehouse.backend import Warehouse

_TOKEN = re.compile(r"mft_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})")


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    participant_id: str
    token: str  # shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(wh: Warehouse, participant_id: str, label: str, now: datetime) -> IssuedToken:
    """A new token for the participant (which the warehouse must know)."""
    check_identifier(participant_id, "participant id")
    known = wh.query(
        f"SELECT participant_id FROM {wh.table('dim_participant')} WHERE participant_id = ?",
        [participant_id],
    )
    if known.empty:
        raise MeterflowError(f"no participant {participant_id!r} in the warehouse: load it first")
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = {
        "token_id": token_id,
        "participant_id": participant_id,
        "label": label,
        "secret_sha256": _digest(secret),
        "created_utc": now,
        "revoked_utc": None,
    }
    wh.upsert("api_token", pd.DataFrame([row]))
    return IssuedToken(token_id, participant_id, f"mft_{token_id}_{secret}")


def revoke_token(wh: Warehouse, token_id: str, now: datetime) -> None:
    """From now on the token is refused; its row stays, to show who had access when."""
    table = wh.table("api_token")
    if wh.query(f"SELECT token_id FROM {table} WHERE token_id = ?", [token_id]).empty:
        raise MeterflowError(f"no API token {token_id!r}")
    wh.execute(
        f"UPDATE {table} SET revoked_utc = ? WHERE token_id = ? AND revoked_utc IS NULL",
        [now, token_id],
    )


def list_tokens(wh: Warehouse, participant_id: str | None = None) -> pd.DataFrame:
    """Every token's id, participant, label and dates (never the hash)."""
    sql = (
        "SELECT token_id, participant_id, label, created_utc, revoked_utc "
        f"FROM {wh.table('api_token')}"
    )
    params: list = []
    if participant_id:
        sql += " WHERE participant_id = ?"
        params.append(participant_id)
    return wh.query(sql + " ORDER BY created_utc, token_id", params)


def participant_of(wh: Warehouse, token: str) -> str | None:
    """The participant a live token belongs to; None for anything else (malformed, unknown,
    revoked or wrong secret), without saying which."""
    match = _TOKEN.fullmatch(token)
    if not match:
        return None
    token_id, secret = match.groups()
    found = wh.query(
        f"SELECT participant_id, secret_sha256 FROM {wh.table('api_token')} "
        "WHERE token_id = ? AND revoked_utc IS NULL",
        [token_id],
    )
    if found.empty or not hmac.compare_digest(_digest(secret), str(found.secret_sha256.iloc[0])):
        return None
    return str(found.participant_id.iloc[0])
