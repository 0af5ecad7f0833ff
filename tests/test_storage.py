"""A participant's storage: keys, atomic writes, and no way into another participant's data."""

from __future__ import annotations

import os

import pytest

from meterflow.common.errors import InvalidIdentifier
from meterflow.common.storage import LocalStorage


def test_write_read_list_delete(storage):
    storage.write("raw/m1/2026/01/01/a.csv", b"x")
    storage.write("raw/m1/2026/01/02/b.csv", b"y")
    storage.write("config/participant.xml", b"<p/>")
    assert storage.list("raw/m1/") == ["raw/m1/2026/01/01/a.csv", "raw/m1/2026/01/02/b.csv"]
    assert storage.read("raw/m1/2026/01/02/b.csv") == b"y"
    storage.delete("raw/m1/2026/01/01/a.csv")
    assert not storage.exists("raw/m1/2026/01/01/a.csv")
    assert storage.list("nothing/") == []


def test_writes_replace_whole_objects_and_leave_no_temporary_files(storage):
    storage.write("standardised/x.parquet", b"old")
    storage.write("standardised/x.parquet", b"new")
    assert storage.read("standardised/x.parquet") == b"new"
    assert os.listdir(storage.root / "standardised") == ["x.parquet"]


@pytest.mark.parametrize(
    "key",
    [
        "../globex/config/participant.xml",
        "/etc/passwd",
        "raw/../../globex/x",
        "raw//x",
        "raw/.hidden",
        "raw\\..\\globex",
        "",
    ],
)
def test_keys_that_could_escape_are_refused(storage, key):
    with pytest.raises(InvalidIdentifier):
        storage.write(key, b"x")
    with pytest.raises(InvalidIdentifier):
        storage.read(key)


def test_a_symlink_cannot_lead_into_another_participant(tmp_path):
    acme = LocalStorage(tmp_path, "acme")
    globex = LocalStorage(tmp_path, "globex")
    globex.write("config/participant.xml", b"secret")
    acme.write("config/participant.xml", b"mine")
    os.symlink(globex.root, acme.root / "exports")
    with pytest.raises(InvalidIdentifier, match="leaves participant acme"):
        acme.read("exports/config/participant.xml")


@pytest.mark.parametrize("participant", ["../globex", "acme/../globex", "", "a" * 65, "ac me"])
def test_participant_ids_are_strict(tmp_path, participant):
    with pytest.raises(InvalidIdentifier):
        LocalStorage(tmp_path, participant)
