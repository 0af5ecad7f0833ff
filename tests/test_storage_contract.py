"""The storage contract, on every backend: the local folder, S3 (moto server) and GCS
(gcp-storage-emulator), each a real server on loopback for the bucket backends."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from urllib.request import url2pathname

import boto3
import pytest
import requests
from botocore.config import Config
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs
from google.oauth2 import service_account

from emulators.google_oauth import GoogleOAuthEmulator
from meterflow.collection.rawlog import Payload, RunWriter, read_run
from meterflow.common.cloud_storage import GcsStorage, S3Storage
from meterflow.common.errors import InvalidIdentifier
from meterflow.common.storage import LocalStorage
from meterflow.hours.hourly_store import empty_day


@pytest.fixture(scope="module")
def s3_client(s3_endpoint):
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="AKIATESTTESTTEST",
        aws_secret_access_key="contract-test-secret",
        region_name="ap-southeast-2",
        config=Config(signature_version="s3v4"),  # as ParticipantStorage.open configures it
    )


@pytest.fixture(scope="module")
def gcs_client(gcs_endpoint):
    return gcs.Client(
        project="meterflow-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_endpoint},
    )


BUCKETS = itertools.count()
MiB = 1024 * 1024


def bucket_storage(kind: str, participant: str, request):
    """A new bucket for the participant, as in production (one bucket per participant)."""
    bucket = f"mf-{participant}-{next(BUCKETS)}"
    if kind == "s3":
        client = request.getfixturevalue("s3_client")
        client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-2"}
        )
        return S3Storage(client, bucket, participant)
    client = request.getfixturevalue("gcs_client")
    client.create_bucket(bucket)
    return GcsStorage(client, bucket, participant)


@pytest.fixture(params=["local", "s3", "gcs"])
def backend(request, tmp_path):
    """A factory: participant id -> its storage on the backend under test (a bucket each)."""
    if request.param == "local":
        return lambda participant: LocalStorage(tmp_path / "data", participant)
    return lambda participant: bucket_storage(request.param, participant, request)


def test_write_read_replace_exists_delete(backend):
    acme = backend("acme")
    acme.write("config/participant.xml", b"<old/>")
    acme.write("config/participant.xml", b"<new/>")  # a whole-object replace
    assert acme.read("config/participant.xml") == b"<new/>"
    assert acme.exists("config/participant.xml") and not acme.exists("config/other.xml")
    acme.delete("config/participant.xml")
    acme.delete("config/participant.xml")  # deleting what is gone is fine
    assert not acme.exists("config/participant.xml")
    with pytest.raises(FileNotFoundError):
        acme.read("config/participant.xml")


def test_listing_by_prefix_is_sorted_and_stays_under_the_prefix(backend):
    acme = backend("acme")
    for key in ("raw/m2/b.csv", "raw/m1/2026/a.csv", "raw/m10/c.csv", "standardised/x.parquet"):
        acme.write(key, b"x")
    assert acme.list("raw/m1/") == ["raw/m1/2026/a.csv"]
    assert acme.list("raw/") == ["raw/m1/2026/a.csv", "raw/m10/c.csv", "raw/m2/b.csv"]
    assert acme.list("nothing/") == []
    assert len(acme.list()) == 4


@pytest.mark.parametrize("key", ["../globex/config/participant.xml", "/etc/passwd", "raw//x"])
def test_keys_that_could_escape_are_refused(backend, key):
    acme = backend("acme")
    with pytest.raises(InvalidIdentifier):
        acme.write(key, b"x")
    with pytest.raises(InvalidIdentifier):
        acme.read(key)
    with pytest.raises(InvalidIdentifier):
        acme.open(key)
    with pytest.raises(InvalidIdentifier):
        acme.write_stream(key, [b"x"])
    acme.write("raw/x.csv", b"x")
    for source, target in ((key, "raw/y.csv"), ("raw/x.csv", key)):
        with pytest.raises(InvalidIdentifier):
            acme.move(source, target)
    assert acme.list() == ["raw/x.csv"]


def test_a_large_object_streams_in_and_out_without_being_whole_in_memory(backend):
    """12 MiB written from 1 MiB chunks and read back in 1 MiB reads: more than one S3 part and
    one GCS chunk, and neither side ever holds the whole object."""
    acme = backend("acme")
    sent, received = hashlib.sha256(), hashlib.sha256()

    def chunks():
        for i in range(12):
            chunk = random.Random(i).randbytes(MiB)
            sent.update(chunk)
            yield chunk

    acme.write_stream("raw/m1/export.csv", chunks())
    size = 0
    with acme.open("raw/m1/export.csv") as stream:
        while piece := stream.read(MiB):
            assert len(piece) <= MiB
            size += len(piece)
            received.update(piece)
    assert size == 12 * MiB and received.hexdigest() == sent.hexdigest()


def test_a_streamed_write_replaces_the_object_like_write(backend):
    acme = backend("acme")
    acme.write("raw/m1/day.csv", b"old")
    acme.write_stream("raw/m1/day.csv", iter([b"t,v\n", b"", b"1,2\n"]))
    assert acme.read("raw/m1/day.csv") == b"t,v\n1,2\n"
    acme.write_stream("raw/m1/day.csv", [])
    assert acme.read("raw/m1/day.csv") == b""


class Interrupted(Exception):
    pass


def test_a_stream_that_fails_midway_leaves_the_old_object_or_none(backend):
    """Past the first 8 MiB, so S3 has a multipart upload and GCS a resumable one under way."""
    acme = backend("acme")
    acme.write("raw/m1/export.csv", b"old")

    def interrupted():
        yield b"x" * (9 * MiB)
        raise Interrupted("the meter portal hung up")

    for key in ("raw/m1/export.csv", "raw/m1/new.csv"):
        with pytest.raises(Interrupted):
            acme.write_stream(key, interrupted())
    assert acme.read("raw/m1/export.csv") == b"old"
    assert acme.list() == ["raw/m1/export.csv"]
    if isinstance(acme, LocalStorage):  # no temporary file left behind
        assert os.listdir(acme.root / "raw/m1") == ["export.csv"]
    if isinstance(acme, S3Storage):  # no incomplete upload left to pay for
        assert "Uploads" not in acme.client.list_multipart_uploads(Bucket=acme.bucket)


def test_opening_a_missing_object_fails_like_reading_it(backend):
    acme = backend("acme")
    for fetch in (acme.read, acme.open):
        with pytest.raises(FileNotFoundError):
            fetch("raw/m1/none.csv")


def test_a_move_replaces_the_target_and_leaves_nothing_at_the_source(backend):
    acme = backend("acme")
    acme.write("inbox/m1/day.csv", b"new day")
    acme.write("raw/m1/day.csv", b"old day")
    acme.move("inbox/m1/day.csv", "raw/m1/day.csv")
    assert acme.read("raw/m1/day.csv") == b"new day" and acme.list() == ["raw/m1/day.csv"]
    acme.move("raw/m1/day.csv", "archive/2026/day.csv")  # to a folder not there yet
    acme.move("archive/2026/day.csv", "archive/2026/day.csv")  # onto itself: kept
    assert acme.list() == ["archive/2026/day.csv"]
    assert acme.read("archive/2026/day.csv") == b"new day"
    with pytest.raises(FileNotFoundError):
        acme.move("inbox/m1/day.csv", "raw/m1/day.csv")
    assert acme.list() == ["archive/2026/day.csv"]


def test_participants_do_not_see_each_other(backend):
    acme, globex = backend("acme"), backend("globex")
    acme.write("config/participant.xml", b"acme")
    globex.write("config/participant.xml", b"globex")
    assert acme.read("config/participant.xml") == b"acme"
    assert acme.list() == ["config/participant.xml"] == globex.list()


def test_a_refetched_payload_is_kept_beside_the_first_version(backend):
    """force_override refetches: a changed payload under the same name is a second version, in
    a run object of its own; run objects are never rewritten."""
    acme = backend("acme")
    first = Payload("day.csv", b"t,v\n1,2\n", "acme:exports/m1/day.csv")
    again = Payload("day.csv", b"t,v\n1,3\n", "acme:exports/m1/day.csv")
    keys = []
    for hour, payload in enumerate((first, again)):
        run = RunWriter(datetime(2026, 4, 2, hour, tzinfo=UTC))
        run.add("m1", payload, None, run.started, "cfg")
        keys.append(run.write(acme, empty_day(), {}))
    assert acme.list("raw/") == keys and keys[0] != keys[1]
    assert [read_run(acme, k).data(acme, 0) for k in keys] == [first.data, again.data]


def put_raw(storage, name: str, data: bytes) -> None:
    """An outsider's upload under any name, bypassing the key checks (as they would)."""
    if isinstance(storage, LocalStorage):
        path = storage.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    elif isinstance(storage, S3Storage):
        storage.client.put_object(Bucket=storage.bucket, Key=name, Body=data)
    else:
        storage.bucket.blob(name).upload_from_string(data)


def test_an_inbox_scan_sees_every_name_and_reads_and_removes_it(backend):
    acme = backend("acme")
    names = [
        "inbox/m1/100% pv.csv",
        "inbox/m1/données.csv",
        "inbox/m1/.hidden.csv",
        "inbox/m1/ok.csv",
    ]
    for i, name in enumerate(names):
        put_raw(acme, name, f"body {i}".encode())
    acme.write("inbox/m2/other.csv", b"other meter")
    entries = acme.scan("inbox/m1/")
    assert [e.name for e in entries] == sorted(names)
    assert [e.key for e in entries] == [
        e.name if e.name.endswith("/ok.csv") else None for e in entries
    ]
    assert [acme.read_entry(e) for e in entries] == [
        f"body {names.index(e.name)}".encode() for e in entries
    ]
    assert acme.list("inbox/m1/") == ["inbox/m1/ok.csv"]  # list gives valid keys only
    for entry in entries:
        acme.remove_entry(entry)
    assert acme.scan("inbox/m1/") == [] and acme.list("inbox/m2/") == ["inbox/m2/other.csv"]


def test_a_shared_link_opens_the_object_for_its_lifetime(backend, gcs_endpoint):
    """What a report link gives a participant's people: a file URI in a local folder, a
    presigned URL on S3, a V4 signed URL on GCS (signed with a service account key), each
    naming its lifetime and opening the object over plain HTTP."""
    acme = backend("acme")
    acme.write("reports/latest.html", b"<html>acme</html>")
    week = timedelta(days=7)
    if isinstance(acme, LocalStorage):
        link = acme.share("reports/latest.html", week)
        assert link.startswith("file://")
        with open(url2pathname(urlsplit(link).path), "rb") as opened:
            assert opened.read() == b"<html>acme</html>"
        return
    if isinstance(acme, GcsStorage):  # signing needs a key: the job's service account's
        with GoogleOAuthEmulator() as oauth:
            key = oauth.service_account("reports@meterflow-test.iam", "meterflow-test")
        signer = gcs.Client(
            project="meterflow-test",
            credentials=service_account.Credentials.from_service_account_info(key),
            client_options={"api_endpoint": gcs_endpoint},
        )
        acme = GcsStorage(signer, acme.bucket.name, "acme")
    link = acme.share("reports/latest.html", week)
    query = {k.lower(): v for k, v in parse_qs(urlsplit(link).query).items()}
    scheme = "x-goog" if isinstance(acme, GcsStorage) else "x-amz"
    assert query[f"{scheme}-algorithm"] in (["GOOG4-RSA-SHA256"], ["AWS4-HMAC-SHA256"])
    assert query[f"{scheme}-expires"] == ["604800"] and query[f"{scheme}-signature"]
    signer = "reports@meterflow-test.iam" if scheme == "x-goog" else "AKIATESTTESTTEST"
    assert query[f"{scheme}-credential"][0].startswith(f"{signer}/")
    opened = requests.get(link, timeout=10)
    assert opened.status_code == 200 and opened.content == b"<html>acme</html>"
