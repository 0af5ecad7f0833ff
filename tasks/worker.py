"""What the collection tasks do in a worker process (`tasks.pool`): Meterflow's domain calls and
the connectors, with no Prefect import, so that a worker starts in about 0.5 s rather than
2.4 s. Prefect is loaded only for a participant whose storage, or a meter whose credentials, is
a block; xmlschema only for a configuration libxml2 refuses; no warehouse code at all."""

from __future__ import annotations

import atexit
import gc
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import context, spawn
from pathlib import Path

from blocks.resolve import SourceBlocks
from blocks.storage import open_storage
from connectors import CONNECTOR_TYPES, connector_for
from meterflow.collection import collect
from meterflow.collection.catalog import Catalog, read_catalog
from meterflow.collection.plan import MeterWindow, plan_meters
from meterflow.collection.shards import ShardReport, shard, shard_label
from meterflow.common.memory import release_memory
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Meter, Participant
from meterflow.configuration.participants import read_configuration

# A spawned process first runs its parent's main module, as `__mp_main__`. A deployed flow
# run's is Prefect's CLI (`prefect flow-run execute`): 0.8 s and 48 MiB PSS more in every
# worker of every dispatch here, for nothing a worker uses. Processes of this name skip it
# (spawn's preparation data is replaced for them alone): what a worker runs is named by module
# (`tasks.worker`, the connectors), never by the main module.
WORKER_NAME = "meterflow-worker"


def _preparation_data(name: str, prepared=spawn.get_preparation_data) -> dict:
    data = prepared(name)
    if name == WORKER_NAME:
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
    return data


spawn.get_preparation_data = _preparation_data


class _WorkerProcess(context.SpawnProcess):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = WORKER_NAME


class _WorkerContext(context.SpawnContext):
    Process = _WorkerProcess


# How worker processes start: spawned (a fork would copy the flow's threads), without the
# parent's main module.
WORKER_CONTEXT = _WorkerContext()


def start_worker(env: dict[str, str]) -> None:
    """A worker's start: the flow's Prefect settings, for the blocks it may read. And its end,
    once the pool stops it, without the interpreter's teardown: that frees every module's objects
    one by one (0.2 s here, with pandas and pyarrow loaded), while the flow waits for its pool
    to stop; the worker holds nothing to flush but its standard streams, and the system frees
    its memory at once."""
    os.environ.update(env)
    atexit.register(_exit_at_once)
    # The modules this one imported (and theirs) are there for good: the collector need not
    # walk their objects again (a full collection took 60 ms in five participants' work).
    gc.freeze()


def _exit_at_once() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass
class Planned:
    """A participant validated and planned. When its plan fits one shard and the caller allowed
    it, the shard was collected and merged in the same task run (`report`); otherwise `planned`
    waits for the caller to run it in shards. `error` says why it could not be (its XML, by
    line, or its storage)."""

    participant_id: str
    participant: Participant | None = None
    planned: list[MeterWindow] = field(default_factory=list)
    report: ShardReport | None = None
    error: Exception | None = None


def plan(storage: Storage, participant: Participant, window, catalog=None) -> list[MeterWindow]:
    def connector_type(meter: Meter):
        return CONNECTOR_TYPES[meter.connector.type]

    return plan_meters(storage, participant, window, connector_type, catalog)


def collect_participant(
    data_root: str,
    participant_id: str,
    window: HourWindow,
    shard_size: int,
    one_shard: bool,
    in_bucket: bool | None,
) -> Planned:
    """Validate and plan the participant, and (when its plan fits one shard and `one_shard`)
    collect and merge it; one that fails, fails alone. `in_bucket`: whether its storage is a
    block (None: ask Prefect's API)."""
    try:
        return _collect_participant(
            data_root, participant_id, window, shard_size, one_shard, in_bucket
        )
    except Exception as exc:  # the flow reports it, naming the participant
        return Planned(participant_id, error=exc)


def _collect_participant(
    data_root: str,
    participant_id: str,
    window: HourWindow,
    shard_size: int,
    one_shard: bool,
    in_bucket: bool | None,
) -> Planned:
    storage = open_storage(data_root, participant_id, in_bucket)
    participant = read_configuration(storage)
    catalog = read_catalog(storage)
    planned = plan(storage, participant, window, catalog)
    shards = shard(planned, shard_size)
    if not one_shard or len(shards) > 1:
        return Planned(participant_id, participant, planned)
    report = ShardReport()
    if shards:
        label = shard_label(0, 1, shards[0])
        report = _collect(data_root, storage, participant, planned, label, None, catalog)
    merge(storage, participant, report.runs)
    return Planned(participant_id, participant, report=report)


def collect_shard(
    data_root: str,
    participant: Participant,
    planned: list[MeterWindow],
    label: str,
    force_override: bool | None,
    in_bucket: bool | None,
) -> ShardReport:
    """Collect a shard's meter windows; a failing meter fails alone. Only a summary per meter
    and the key of the shard's run object go back."""
    storage = open_storage(data_root, participant.id, in_bucket)
    return _collect(data_root, storage, participant, planned, label, force_override)


def _collect(
    data_root: str,
    storage: Storage,
    participant: Participant,
    planned: list[MeterWindow],
    label: str,
    force_override: bool | None,
    catalog: Catalog | None = None,
) -> ShardReport:
    blocks = SourceBlocks()

    def connector_of(meter: Meter):
        return connector_for(
            meter,
            participant.id,
            blocks.access(meter),
            state_dir=Path(data_root) / ".platform",
            s3_client=blocks.s3_client(meter) if meter.connector.type == "s3" else None,
        )

    run = collect.collect_shard(
        storage,
        participant,
        planned,
        connector_of,
        force_override=force_override,
        catalog=catalog,
        label=label,
    )
    report = ShardReport.of(run)
    release_memory()
    return report


def merge_runs(
    data_root: str, participant: Participant, runs: list[str], in_bucket: bool | None
) -> int:
    """Merge the runs (and any a lost flow left) into the participant's storage."""
    return merge(open_storage(data_root, participant.id, in_bucket), participant, runs)


def merge(storage: Storage, participant: Participant, runs: list[str]) -> int:
    """Upsert the runs' hours into the day files and record them in the catalog (and any run a
    lost flow left unmerged); the number of meter-hours that changed."""
    now = datetime.now(UTC)
    changed = collect.merge(storage, participant, [*runs, *collect.unmerged(storage, now)], now)
    release_memory()
    return changed
