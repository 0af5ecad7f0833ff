"""Which storage a participant's data lives in, chosen per participant by a block.

A `ParticipantStorage` block named after the participant points at its bucket (prefect-gcp
`GcsBucket` or prefect-aws `S3Bucket`, one bucket per participant); a participant without one is
the local folder `<data_root>/<participant>/`, as in `make demo`. The block type and the cloud
SDKs it needs are imported only when a participant has one, and Prefect's client only when
asked: a worker process collecting local participants it was told are local
(`in_bucket=False`) never imports Prefect.
"""

from __future__ import annotations

from pathlib import Path

from meterflow.common.errors import MeterflowError
from meterflow.common.storage import LocalStorage, Storage
from meterflow.configuration.ids import check_identifier
from meterflow.configuration.participants import list_participants


def block_name(participant_id: str) -> str:
    """The `ParticipantStorage` block name for a participant (block names are lower case)."""
    return check_identifier(participant_id, "participant id").lower().replace("_", "-")


STORAGE_BLOCK_SLUG = "meterflow-participant-storage"


def open_storage(
    data_root: str | Path, participant_id: str, in_bucket: bool | None = None
) -> Storage:
    """The participant's bucket if a block names one, else its local folder under data_root.
    `in_bucket` says which, when the caller knows (`in_buckets`); None asks Prefect's API."""
    name = block_name(participant_id)
    if in_bucket is None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                client.read_block_document_by_name(name, STORAGE_BLOCK_SLUG, include_secrets=False)
                in_bucket = True
            except ObjectNotFound:
                in_bucket = False
    if not in_bucket:
        return LocalStorage(data_root, participant_id)
    from blocks.participant_storage import ParticipantStorage

    block = ParticipantStorage.load(name)
    if block.participant != participant_id:
        raise MeterflowError(
            f"participant {participant_id}: storage block {block_name(participant_id)} "
            f"belongs to participant {block.participant}"
        )
    return block.open()


def participant_ids(data_root: str | Path, blocks: dict[str, str] | None = None) -> list[str]:
    """Every participant: those with a storage block, and local folders holding a configuration.
    `blocks`: `storage_blocks()`, when the caller has it already."""
    blocks = storage_blocks() if blocks is None else blocks
    return sorted(set(blocks.values()) | set(list_participants(data_root)))


def in_buckets(participant_ids: list[str], blocks: dict[str, str] | None = None) -> list[str]:
    """Those of the participants whose storage a block names, as `open_storage` finds them."""
    names = storage_blocks() if blocks is None else blocks
    return [p for p in participant_ids if block_name(p) in names]


def known_bucket(participant_id: str, buckets: list[str] | None) -> bool | None:
    """Whether the participant's storage is a block, from `in_buckets` (None: not asked)."""
    return None if buckets is None else participant_id in buckets


def storage_blocks() -> dict[str, str]:
    """Each storage block's name and the participant it names (one API call)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(
                STORAGE_BLOCK_SLUG, include_secrets=False
            )
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 404:  # 404: the block type is not registered yet
                raise
            documents = []
    return {document.name: document.data["participant"] for document in documents}


def __getattr__(name: str):
    if name == "ParticipantStorage":  # the block type, with the cloud SDKs, when asked for
        from blocks.participant_storage import ParticipantStorage

        return ParticipantStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
