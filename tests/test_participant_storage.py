"""Each participant's storage is chosen by its block: dispatch reads and writes one participant
in an S3 bucket (moto server), one in a GCS bucket (gcp-storage-emulator, with a service-account
token from a loopback Google OAuth endpoint) and one in a local folder, in one run."""

from __future__ import annotations

import itertools
import re

import duckdb
import pytest
import requests
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect_aws import AwsCredentials, S3Bucket
from prefect_gcp import GcpCredentials
from prefect_gcp.cloud_storage import GcsBucket

from blocks.storage import ParticipantStorage, open_storage, participant_ids
from emulators.google_oauth import GoogleOAuthEmulator
from flows.dispatch import dispatch
from flows.doctor import storage_checks
from meterflow.collection.catalog import archived
from meterflow.common.cloud_storage import GcsStorage, S3Storage
from meterflow.common.errors import MeterflowError
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.configuration.fleets import csv_meter, participant_xml

SERVICE_ACCOUNT = "meterflow-runs@meterflow-test.iam.gserviceaccount.com"
PARTICIPANTS = {"s3-tenant": 1.0, "gcs-tenant": 2.0, "local-tenant": 3.0}
BUCKETS = itertools.count()  # the bucket servers live for the whole session


def s3_block(endpoint: str, bucket: str) -> S3Bucket:
    credentials = AwsCredentials(
        aws_access_key_id="AKIATESTTESTTEST",
        aws_secret_access_key="participant-storage-secret",
        region_name="ap-southeast-2",
        aws_client_parameters={"endpoint_url": endpoint},
    )
    client = credentials.get_s3_client()
    location = {"LocationConstraint": "ap-southeast-2"}
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
    return S3Bucket(bucket_name=bucket, credentials=credentials)


def gcs_block(oauth: GoogleOAuthEmulator, bucket: str) -> GcsBucket:
    """A bucket reached with a service account's key, exchanged for a token as on GCP."""
    info = oauth.service_account(SERVICE_ACCOUNT, "meterflow-test")
    credentials = GcpCredentials(service_account_info=info, project="meterflow-test")
    credentials.get_cloud_storage_client().create_bucket(bucket)
    return GcsBucket(bucket=bucket, gcp_credentials=credentials)


@pytest.fixture
def tenants(prefect_server, s3_endpoint, gcs_endpoint, tmp_path, monkeypatch):
    """Three participants, each with a day of hourly CSV in its own storage; the storage blocks
    are deleted at the end so no other test sees them."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    data_root = tmp_path / "data"
    with GoogleOAuthEmulator() as oauth:
        ParticipantStorage(
            participant="s3-tenant", bucket=s3_block(s3_endpoint, f"s3-tenant-{next(BUCKETS)}")
        ).save("s3-tenant", overwrite=True)
        gcs = gcs_block(oauth, f"gcs-tenant-{next(BUCKETS)}")
        ParticipantStorage(participant="gcs-tenant", bucket=gcs).save("gcs-tenant", overwrite=True)
        try:
            for pid, value in PARTICIPANTS.items():
                storage = open_storage(data_root, pid)
                storage.write(CONFIG_KEY, participant_xml(pid, [csv_meter("main", 60)]))
                rows = "".join(f"2026-04-01T{h:02d}:00:00Z,{value}\n" for h in range(24))
                storage.write("exports/main/day.csv", ("timestamp,value\n" + rows).encode())
            yield data_root, oauth
        finally:
            with get_client(sync_client=True) as client:
                slug = ParticipantStorage.get_block_type_slug()
                for document in client.read_block_documents_by_type(slug):
                    client.delete_block_document(document.id)


def test_dispatch_uses_the_bucket_each_participants_block_names(tenants, tmp_path):
    data_root, oauth = tenants
    assert participant_ids(data_root) == ["gcs-tenant", "local-tenant", "s3-tenant"]
    assert isinstance(open_storage(data_root, "s3-tenant"), S3Storage)
    assert isinstance(open_storage(data_root, "gcs-tenant"), GcsStorage)
    assert isinstance(open_storage(data_root, "local-tenant"), LocalStorage)
    # Only the local participant has a folder: bucket participants never touch the disk.
    assert sorted(p.name for p in data_root.iterdir()) == ["local-tenant"]

    warehouse = str(tmp_path / "warehouse.duckdb")
    start, end = "2026-04-01T00:00+00:00", "2026-04-02T00:00+00:00"
    rows = dispatch(start=start, end=end, data_root=str(data_root), warehouse=warehouse)
    assert {r["participant"]: r["hours_new"] for r in rows} == dict.fromkeys(PARTICIPANTS, 24)
    with duckdb.connect(warehouse, read_only=True) as con:
        totals = con.execute(
            "SELECT participant_id, count(*), sum(value) FROM fact_meter_hourly GROUP BY 1"
        ).fetchall()
    assert sorted(totals) == [
        ("gcs-tenant", 24, 48.0),
        ("local-tenant", 24, 72.0),
        ("s3-tenant", 24, 24.0),
    ]

    day = "standardised/energy/2026-04-01.parquet"
    for pid in ("s3-tenant", "gcs-tenant"):
        storage = open_storage(data_root, pid)
        assert storage.exists(day), storage.list()
        assert [raw["meter_id"] for raw in archived(storage, "main")] == ["main"]
    assert not (data_root / "s3-tenant").exists() and not (data_root / "gcs-tenant").exists()
    assert set(oauth.grants) == {SERVICE_ACCOUNT}  # GCS was reached with the block's account

    # Each report is in its participant's own storage, dated and latest, and the run links it
    # where the participant's people can open it: a signed URL to the bucket, never a worker's
    # disk (the local participant's folder is its storage).
    for pid in PARTICIPANTS:
        storage = open_storage(data_root, pid)
        keys = ["reports/2026-04-01.html", "reports/latest.html", "reports/latest.json"]
        assert storage.list("reports/") == keys
        assert storage.read(keys[0]) == storage.read(keys[1])
        link = report_link(pid)
        if pid == "local-tenant":
            assert link == (data_root / pid / "reports" / "latest.html").resolve().as_uri()
            continue
        assert link.startswith(("http://127.0.0.1", "http://localhost")), link
        opened = requests.get(link, timeout=10)
        assert opened.status_code == 200 and f"Fleet {pid}" in opened.text

    s3 = open_storage(data_root, "s3-tenant")
    before = {key: s3.read(key) for key in s3.list()}
    again = dispatch(start=start, end=end, data_root=str(data_root), warehouse=warehouse)
    assert all(r["hours_new"] == 0 for r in again)
    assert {key: s3.read(key) for key in s3.list()} == before


def report_link(participant_id: str) -> str:
    """Where the latest dispatch's report artifact for the participant points."""
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=[f"report-{participant_id}"])
            )
        )
    return re.fullmatch(r"\[.*\]\((.*)\)", artifact.data).group(1)


def test_a_block_that_names_another_participant_or_a_shared_folder_is_refused(tenants):
    data_root, _ = tenants
    borrowed = ParticipantStorage.load("s3-tenant")
    ParticipantStorage(participant="s3-tenant", bucket=borrowed.bucket).save(
        "thief", overwrite=True
    )
    with pytest.raises(MeterflowError, match="block thief belongs to participant s3-tenant"):
        open_storage(data_root, "thief")
    borrowed.bucket.bucket_folder = "tenants/s3-tenant"
    with pytest.raises(MeterflowError, match="one bucket per participant"):
        borrowed.open()


def test_doctor_reports_a_bucket_it_cannot_reach_with_the_block_to_fix(tenants):
    data_root, _ = tenants
    checks = {c.what: c for c in storage_checks(str(data_root))}
    assert checks["storage of s3-tenant (S3Storage)"].ok
    assert checks["storage of gcs-tenant (GcsStorage)"].ok
    assert checks["storage of local-tenant (LocalStorage)"].ok
    broken = ParticipantStorage.load("s3-tenant")
    broken.bucket.bucket_name = "no-such-bucket"
    broken.save("s3-tenant", overwrite=True)
    failed = {c.what: c for c in storage_checks(str(data_root))}["storage of s3-tenant"]
    assert not failed.ok
    assert "NoSuchBucket" in failed.fix
    assert "meterflow-participant-storage/s3-tenant" in failed.fix
    assert "participant-storage-secret" not in failed.fix
