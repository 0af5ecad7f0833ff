"""What the bare run's worker processes do, in a module of its own: a worker imports it to run
`collect_participant`, and imports with it no more than a dispatch's workers import
(`tasks.worker`), not the benchmark's warehouse, peer and fleet code."""

from __future__ import annotations

from pathlib import Path

from meterflow.collection.shards import (
    DEFAULT_SHARD_SIZE,
    MeterOutcome,
    ShardReport,
    shard,
    shard_label,
)
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Participant
from tasks import worker


def collect_participant(
    data_root: Path, participant_id: str, window: HourWindow
) -> tuple[Participant, list[MeterOutcome]]:
    """One participant in a worker process, with the code the dispatch's worker processes run
    (`tasks.worker`): validated, planned, collected shard by shard, and its runs merged."""
    root = str(data_root)
    planned = worker.collect_participant(
        root, participant_id, window, DEFAULT_SHARD_SIZE, True, False
    )
    if planned.error is not None:
        raise planned.error
    if planned.report is not None:  # one shard: collected and merged already
        return planned.participant, planned.report.outcomes
    report, shards = ShardReport(), shard(planned.planned, DEFAULT_SHARD_SIZE)
    for i, meters in enumerate(shards):
        label = shard_label(i, len(shards), meters)
        report.merge(worker.collect_shard(root, planned.participant, meters, label, None, False))
    worker.merge_runs(root, planned.participant, report.runs, False)
    return planned.participant, report.outcomes
