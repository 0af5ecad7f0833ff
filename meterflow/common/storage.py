"""Per-participant storage: keys, not paths, so local folders, GCS and S3 behave alike.

A `Storage` is bound to one participant's root and only ever sees keys below it. Keys are
checked against a strict pattern, and the local backend also refuses anything that resolves
outside the root (symlinks included), so one participant can never reach another's data.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from meterflow.common.errors import InvalidIdentifier
from meterflow.configuration.ids import check_identifier, check_key, is_key

CONFIG_KEY = "config/participant.xml"


@dataclass(frozen=True)
class Entry:
    """Something found under a folder that outsiders write to (an inbox, an export folder), as
    it is: its name need not be a valid key, and in a local folder it may be a symbolic link
    (never followed) or not a regular file at all (a FIFO, a socket)."""

    name: str  # below the participant's root, '/'-separated, exactly as found
    kind: Literal["file", "link", "special"] = "file"
    size: int = 0
    target: str | None = None  # what a link points to, as written in the link
    version: str = ""  # changes whenever the content may have: mtime, ETag, generation

    @property
    def key(self) -> str | None:
        """The name as a storage key, or None if it does not fit the key pattern."""
        return self.name if is_key(self.name) else None


class Storage(Protocol):
    """What the platform needs of a participant's bucket."""

    participant_id: str

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a part."""

    def open(self, key: str) -> BinaryIO:
        """The object as a binary stream to read piece by piece (the caller closes it, best with
        `with`), so that a large object (a meter export of hundreds of MB) is never whole in
        memory. A missing key raises FileNotFoundError, as `read` does."""

    def write_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """Write the chunks as one object without joining them in memory, atomically like
        `write`: if `chunks` raises, the object at `key` is left as it was."""

    def move(self, source: str, target: str) -> None:
        """Put the object at `source` at `target` (replacing any there) and remove `source`,
        without bringing its bytes through this process where the backend can avoid it."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix`, sorted (objects whose names are not valid keys: see `scan`)."""

    def delete(self, key: str) -> None: ...

    def uri(self, key: str) -> str:
        """Where the object is for a reader other than this class: a warehouse loading stored
        files (a local path, `gs://..` or `s3://..`)."""

    def share(self, key: str, expires: timedelta) -> str:
        """A link a person can open in a browser for `expires`: a signed URL on a bucket, the
        file itself in a local folder (the embedded default, on the machine that holds it)."""

    def scan(self, prefix: str) -> list[Entry]:
        """Everything under `prefix` as found, bad names and links included, sorted by name."""

    def read_entry(self, entry: Entry) -> bytes:
        """The bytes of a scanned file entry (never through a link)."""

    def remove_entry(self, entry: Entry) -> None:
        """Remove a scanned entry (a link itself, not its target)."""


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

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def share(self, key: str, expires: timedelta) -> str:
        return self._path(key).as_uri()

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def write(self, key: str, data: bytes) -> None:
        self.write_stream(key, [data])

    def write_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """Into a temporary file beside the target, renamed over it once complete (a rename
        within a folder is atomic)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.writelines(chunks)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def move(self, source: str, target: str) -> None:
        source_path, target_path = self._path(source), self._path(target)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source_path, target_path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        files = (p for p in base.rglob("*") if p.is_file() and not p.is_symlink())
        keys = (p.relative_to(self.root).as_posix() for p in files)
        return sorted(key for key in keys if is_key(key))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def scan(self, prefix: str) -> list[Entry]:
        folder = check_key(prefix).rstrip("/")
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):  # a linked folder is an entry, not a way out
            name = "/".join(parts[:depth])
            path = self.root / name
            if path.is_symlink():
                return [Entry(name, "link", target=os.readlink(path))]
            if not path.is_dir():
                return [] if not path.exists() else [_local_entry(self.root, name)]
        return sorted(_walk(self.root, folder), key=lambda entry: entry.name)

    def read_entry(self, entry: Entry) -> bytes:
        folder, name = self._folder_of(entry)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        finally:
            os.close(folder)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(f"{entry.name} is not a regular file")
            return handle.read()

    def remove_entry(self, entry: Entry) -> None:
        folder, name = self._folder_of(entry)
        try:
            os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            pass
        finally:
            os.close(folder)

    def _folder_of(self, entry: Entry) -> tuple[int, str]:
        """An open descriptor of the entry's folder, reached without following any link, and
        the entry's own name in it."""
        *folders, name = entry.name.split("/")
        if any(part in ("", ".", "..") for part in (*folders, name)):
            raise InvalidIdentifier(f"entry {entry.name!r} leaves {self.participant_id}'s storage")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in folders:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd, name


def _walk(root: Path, folder: str) -> list[Entry]:
    entries = []
    with os.scandir(root / folder) as items:
        for item in items:
            name = f"{folder}/{item.name}"
            if item.is_dir(follow_symlinks=False):
                entries += _walk(root, name)
            else:
                entries.append(_local_entry(root, name))
    return entries


def _local_entry(root: Path, name: str) -> Entry:
    info = os.lstat(root / name)
    if stat.S_ISLNK(info.st_mode):
        return Entry(name, "link", target=os.readlink(root / name))
    if stat.S_ISREG(info.st_mode):
        return Entry(name, "file", size=info.st_size, version=str(info.st_mtime_ns))
    return Entry(name, "special")
