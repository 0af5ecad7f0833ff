"""Which storage a participant's data lives in, chosen per participant by a block.

A `ParticipantStorage` block named after the participant points at its bucket (prefect-gcp
`GcsBucket` or prefect-aws `S3Bucket`, one bucket per participant); a participant without one is
the local folder `<data_root>/<participant>/`, as in `make demo`.
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect_aws import S3Bucket
from prefect_gcp.cloud_storage import GcsBucket
from pydantic import Field, field_validator

from meterflow.common.cloud_storage import GcsStorage, S3Storage
from meterflow.common.errors import MeterflowError
from meterflow.common.storage import LocalStorage, Storage
from meterflow.configuration.ids import check_identifier
from meterflow.configuration.participants import list_participants


class ParticipantStorage(Block):
    """The bucket holding one participant's configuration and data. Name the block after the
    participant (lower case, '_' as '-'): `acme` -> block `acme`."""

    _block_type_name = "Meterflow Participant Storage"
    _block_type_slug = "meterflow-participant-storage"
    participant: str = Field(description="The participant id, as in its XML")
    bucket: GcsBucket | S3Bucket = Field(
        description="The participant's own bucket (no bucket_folder: one bucket each)"
    )

    @field_validator("participant")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return check_identifier(value, "participant id")

    def open(self) -> Storage:
        """A client for the bucket, with the credentials its block holds."""
        bucket = self.bucket
        if isinstance(bucket, GcsBucket):
            name, folder = bucket.bucket, bucket.bucket_folder
        else:
            name, folder = bucket.bucket_name, bucket.bucket_folder
        if folder:
            raise MeterflowError(
                f"participant {self.participant}: bucket {name} has bucket_folder {folder!r}; "
                "Meterflow uses one bucket per participant, so that bucket permissions isolate "
                "participants. Clear bucket_folder."
            )
        if isinstance(bucket, GcsBucket):
            client = bucket.gcp_credentials.get_cloud_storage_client()
            return GcsStorage(client, name, self.participant)
        return S3Storage(bucket.credentials.get_s3_client(), name, self.participant)


def block_name(participant_id: str) -> str:
    """The `ParticipantStorage` block name for a participant (block names are lower case)."""
    return check_identifier(participant_id, "participant id").lower().replace("_", "-")


def open_storage(data_root: str | Path, participant_id: str) -> Storage:
    """The participant's bucket if a block names one, else its local folder under data_root."""
    try:
        block = ParticipantStorage.load(block_name(participant_id))
    except ValueError as exc:
        if not isinstance(exc.__cause__, ObjectNotFound):
            raise
        return LocalStorage(data_root, participant_id)
    if block.participant != participant_id:
        raise MeterflowError(
            f"participant {participant_id}: storage block {block_name(participant_id)} "
            f"belongs to participant {block.participant}"
        )
    return block.open()


def participant_ids(data_root: str | Path) -> list[str]:
    """Every participant: those with a storage block, and local folders holding a configuration."""
    slug = ParticipantStorage.get_block_type_slug()
    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(slug, include_secrets=False)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 404:  # 404: the block type is not registered yet
                raise
            documents = []
    in_buckets = {document.data["participant"] for document in documents}
    return sorted(in_buckets | set(list_participants(data_root)))
