"""What an API connector needs to reach its source, and a per-key daily call budget."""

from __future__ import annotations

import fcntl
import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr


class SourceAccess(BaseModel):
    """Endpoint and secret of a source, resolved from the block a meter names."""

    model_config = ConfigDict(frozen=True)

    block: str | None = None
    base_url: str
    api_key: SecretStr | None = None
    daily_call_limit: int | None = None

    @property
    def key_id(self) -> str:
        """A stable, non-reversible name for the key (budgets are kept per key, not per meter)."""
        secret = self.api_key.get_secret_value() if self.api_key else ""
        return hashlib.sha256(f"{self.base_url}|{secret}".encode()).hexdigest()[:16]


class CallBudget:
    """Calls per key per UTC day, shared by every meter (and process) using the key.

    Kept in a small JSON file under the platform's state folder, updated under a file lock.
    Only key ids are stored, never keys.
    """

    def __init__(self, path: Path):
        self.path = path

    def take(self, key_id: str, limit: int, now: datetime | None = None) -> bool:
        """Count one call for today; False (and nothing counted) if the day's budget is spent."""
        today = (now or datetime.now(UTC)).date().isoformat()
        with self._locked() as state:
            entry = state.get(key_id, {})
            if entry.get("day") != today:
                entry = {"day": today, "calls": 0, "exhausted": False}
            if entry["exhausted"] or entry["calls"] >= limit:
                return False
            entry["calls"] += 1
            state[key_id] = entry
            return True

    def exhaust(self, key_id: str, now: datetime | None = None) -> None:
        """The source said the key's daily limit is reached: no more calls until 00:00 UTC."""
        today = (now or datetime.now(UTC)).date().isoformat()
        with self._locked() as state:
            entry = state.get(key_id, {"day": today, "calls": 0})
            state[key_id] = {**entry, "day": today, "exhausted": True}

    def spent(self, key_id: str, limit: int, now: datetime | None = None) -> str:
        """Why `take` refused today: the source's own daily limit, or this budget's."""
        entry = self._today(key_id, now)
        calls = entry.get("calls", 0)
        made = f"{calls} call{'' if calls == 1 else 's'} today"
        if entry.get("exhausted"):
            return f"the source answered 'daily limit' after {made}"
        return f"the daily budget of {limit} calls is used ({made})"

    def _today(self, key_id: str, now: datetime | None) -> dict:
        today = (now or datetime.now(UTC)).date().isoformat()
        with self._locked() as state:
            entry = state.get(key_id, {})
            return entry if entry.get("day") == today else {}

    def calls(self, key_id: str, day: date) -> int:
        with self._locked() as state:
            entry = state.get(key_id, {})
            return entry.get("calls", 0) if entry.get("day") == day.isoformat() else 0

    def _locked(self):
        return _LockedJson(self.path)


class _LockedJson:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> dict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a+")
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._handle.seek(0)
        text = self._handle.read()
        self.state = json.loads(text) if text.strip() else {}
        return self.state

    def __exit__(self, kind, *exc) -> None:
        try:
            if kind is None:
                self._handle.seek(0)
                self._handle.truncate()
                json.dump(self.state, self._handle, indent=2, sort_keys=True)
                self._handle.flush()
        finally:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
