"""Per-participant storage: keys, not paths, so local folders, GCS and S3 behave alike.

A `Storage` is bound to one participant's root and only ever sees keys below it. Keys are
checked against a strict pattern, and the local backend also refuses anything that resolves
outside the root (symlinks included), so one participant can never reach another's data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from meterflow.errors import InvalidIdentifier
from meterflow.ids import check_identifier, check_key

CONFIG_KEY = "config/participant.xml"


class Storage(Protocol):
    """What the platform needs of a participant's bucket."""

    participant_id: str

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a part."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix`, sorted."""

    def delete(self, key: str) -> None: ...


class LocalStorage:
    """A participant's storage as a folder `<root>/<participant>/` (the default backend)."""

    def __init__(self, root: str | Path, participant_id: str):
        self.participant_id = check_identifier(participant_id, "participant id")
        self.root = (Path(root) / participant_id).resolve()

    def _path(self, key: str) -> Path:
        check_key(key)
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise InvalidIdentifier(
                f"key {key!r} leaves participant {self.participant_id}'s storage"
            )
        return path

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                keys.append(path.relative_to(self.root).as_posix())
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
