"""The `ParticipantStorage` block type: a participant's own bucket, on GCS or S3."""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect_aws import S3Bucket
from prefect_gcp.cloud_storage import GcsBucket
from pydantic import Field, field_validator

from blocks.storage import STORAGE_BLOCK_SLUG
from meterflow.common.cloud_storage import GcsStorage, S3Storage
from meterflow.common.errors import MeterflowError
from meterflow.common.storage import Storage
from meterflow.configuration.ids import check_identifier


class ParticipantStorage(Block):
    """The bucket holding one participant's configuration and data. Name the block after the
    participant (lower case, '_' as '-'): `acme` -> block `acme`."""

    _block_type_name = "Meterflow Participant Storage"
    _block_type_slug = STORAGE_BLOCK_SLUG
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
        # Presigned report links must be SigV4: boto3 presigns with SigV2 unless told, and
        # SigV2 links fail in every region opened since 2014 and cannot outlive the key.
        credentials = bucket.credentials.model_copy(deep=True)
        parameters = credentials.aws_client_parameters
        parameters.config = {"signature_version": "s3v4", **(parameters.config or {})}
        return S3Storage(credentials.get_s3_client(), name, self.participant)
