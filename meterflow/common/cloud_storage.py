"""Participant storage in a bucket: S3 (or any S3 API) and Google Cloud Storage.

One bucket per participant in production, so bucket permissions isolate participants; keys are
checked exactly as for the local backend. Objects that outsiders put in an inbox may have any
name: `scan` lists them as they are, so that they can be read once and moved to quarantine.
Objects are written whole (a PUT replaces an object atomically, and a streamed upload appears only
once complete), so a reader sees the old object or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, BinaryIO

from boto3.s3.transfer import TransferConfig
from google.api_core.exceptions import NotFound
from google.auth.credentials import Signing
from google.auth.transport.requests import Request as GoogleRequest

from meterflow.common.storage import Entry
from meterflow.configuration.ids import check_identifier, check_key, is_key

PART = 8 * 1024 * 1024  # bytes a stream holds at a time: an S3 part, a GCS chunk (256 KiB * n)
_STREAMED = TransferConfig(use_threads=False)  # one part in memory, chunks read in the caller


class S3Storage:
    """A participant's bucket through a boto3 S3 client (prefect-aws `AwsCredentials` gives one)."""

    def __init__(self, client: Any, bucket: str, participant_id: str):
        self.participant_id = check_identifier(participant_id, "participant id")
        self.client, self.bucket = client, bucket

    def read(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.participant_id}: no object {key}") from None

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{check_key(key)}"

    def share(self, key: str, expires: timedelta) -> str:
        """A presigned URL (SigV4, at most 7 days, when the client's config says `s3v4`, as
        `ParticipantStorage.open` makes it)."""
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": check_key(key)},
            ExpiresIn=int(expires.total_seconds()),
        )

    def open(self, key: str) -> BinaryIO:
        """The GET response's body, buffered: the body's own `with` would hand out the raw
        HTTP stream and skip its length and checksum checks."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.participant_id}: no object {key}") from None
        return io.BufferedReader(body)

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)

    def write_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """A managed upload: one PUT below 8 MiB, else a multipart upload of 8 MiB parts that
        S3 assembles only on completion (and that is aborted if `chunks` raises)."""
        self.client.upload_fileobj(
            io.BufferedReader(_ChunkReader(chunks)), self.bucket, check_key(key), Config=_STREAMED
        )

    def move(self, source: str, target: str) -> None:
        """A copy inside S3 (one request, objects up to 5 GB), then a delete."""
        source, target = check_key(source), check_key(target)
        if source == target:
            return  # copying an object onto itself, then deleting it, would lose it
        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}
            )
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.participant_id}: no object {source}") from None
        self.client.delete_object(Bucket=self.bucket, Key=source)

    def exists(self, key: str) -> bool:
        found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=check_key(key), MaxKeys=1)
        return any(o["Key"] == key for o in found.get("Contents", []))

    def list(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=check_key(prefix) if prefix else ""
        )
        return sorted(
            o["Key"] for page in pages for o in page.get("Contents", []) if is_key(o["Key"])
        )

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def scan(self, prefix: str) -> list[Entry]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=check_key(prefix)
        )
        objects = (o for page in pages for o in page.get("Contents", []))
        return sorted(
            (
                Entry(o["Key"], size=o["Size"], version=o.get("ETag", ""))
                for o in objects
                if not o["Key"].endswith("/")
            ),
            key=lambda entry: entry.name,
        )

    def read_entry(self, entry: Entry) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=entry.name)["Body"].read()

    def remove_entry(self, entry: Entry) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=entry.name)


class GcsStorage:
    """A participant's bucket through a google-cloud-storage client (prefect-gcp's
    `GcpCredentials.get_cloud_storage_client()` gives one)."""

    def __init__(self, client: Any, bucket: str, participant_id: str):
        self.participant_id = check_identifier(participant_id, "participant id")
        self.bucket = client.bucket(bucket)

    def read(self, key: str) -> bytes:
        try:
            return self.bucket.blob(check_key(key)).download_as_bytes()
        except NotFound:
            raise FileNotFoundError(f"{self.participant_id}: no object {key}") from None

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket.name}/{check_key(key)}"

    def share(self, key: str, expires: timedelta) -> str:
        """A V4 signed URL (at most 7 days). A service account key signs locally; the
        credentials of a Cloud Run job have no key and sign through IAM's signBlob (the job's
        service account needs roles/iam.serviceAccountTokenCreator on itself)."""
        client = self.bucket.client
        credentials = client._credentials
        through_iam = {}
        if not isinstance(credentials, Signing):
            if not credentials.valid:
                credentials.refresh(GoogleRequest())
            through_iam = {
                "service_account_email": credentials.service_account_email,
                "access_token": credentials.token,
            }
        return self.bucket.blob(check_key(key)).generate_signed_url(
            version="v4",
            expiration=expires,
            method="GET",
            api_access_endpoint=client._connection.API_BASE_URL,
            **through_iam,
        )

    def open(self, key: str) -> BinaryIO:
        """Ranged reads of 8 MiB, all of the generation found on opening (so a write meanwhile
        cannot mix two versions)."""
        blob = self.bucket.get_blob(check_key(key))
        if blob is None:
            raise FileNotFoundError(f"{self.participant_id}: no object {key}")
        return blob.open("rb", chunk_size=PART)

    def write(self, key: str, data: bytes) -> None:
        self.bucket.blob(check_key(key)).upload_from_string(data)

    def write_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """A resumable upload in 8 MiB chunks: the object appears when it is finalised, and the
        upload is cancelled if `chunks` raises."""
        with self.bucket.blob(check_key(key)).open("wb", chunk_size=PART) as writer:
            for chunk in chunks:
                writer.write(chunk)

    def move(self, source: str, target: str) -> None:
        """A rewrite inside GCS (repeated until done, as large objects need), then a delete."""
        source, target = check_key(source), check_key(target)
        if source == target:
            return  # rewriting an object onto itself, then deleting it, would lose it
        old, new = self.bucket.blob(source), self.bucket.blob(target)
        try:
            token, _, _ = new.rewrite(old)
            while token is not None:
                token, _, _ = new.rewrite(old, token=token)
        except NotFound:
            raise FileNotFoundError(f"{self.participant_id}: no object {source}") from None
        with contextlib.suppress(NotFound):
            old.delete()

    def exists(self, key: str) -> bool:
        return self.bucket.blob(check_key(key)).exists()

    def list(self, prefix: str = "") -> list[str]:
        blobs = self.bucket.client.list_blobs(
            self.bucket, prefix=check_key(prefix) if prefix else None
        )
        return sorted(b.name for b in blobs if is_key(b.name))

    def delete(self, key: str) -> None:
        with contextlib.suppress(NotFound):
            self.bucket.blob(check_key(key)).delete()

    def scan(self, prefix: str) -> list[Entry]:
        blobs = self.bucket.client.list_blobs(self.bucket, prefix=check_key(prefix))
        return sorted(
            (
                Entry(b.name, size=b.size or 0, version=str(b.generation or b.etag or ""))
                for b in blobs
                if not b.name.endswith("/")
            ),
            key=lambda entry: entry.name,
        )

    def read_entry(self, entry: Entry) -> bytes:
        return self.bucket.blob(entry.name).download_as_bytes()

    def remove_entry(self, entry: Entry) -> None:
        with contextlib.suppress(NotFound):
            self.bucket.blob(entry.name).delete()


class _ChunkReader(io.RawIOBase):
    """An iterable of byte chunks as a raw stream, for uploads that read a file object."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks, self._rest = iter(chunks), memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size
