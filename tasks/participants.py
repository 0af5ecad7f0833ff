"""Validate a participant's configuration as the first step of its collection."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.storage import open_storage
from meterflow.configuration.config import Participant
from meterflow.configuration.participants import read_configuration


@task(task_run_name="validate/{participant_id}", cache_policy=NO_CACHE)
def validate_participant(data_root: str, participant_id: str) -> Participant:
    """Fails with every XML problem, by line, if the participant's configuration is invalid."""
    return read_configuration(open_storage(data_root, participant_id))
