"""Plan, collect and merge meter windows: one task run per group of participants or per shard of
meters, never per meter-hour, and one merge per participant (the one writer of its day files
and catalog)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger, task

from blocks import access_for, s3_client_for
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


def _plan(storage: Storage, participant: Participant, window, catalog=None) -> list[MeterWindow]:
    def connector_type(meter: Meter):
        return CONNECTOR_TYPES[meter.connector.type]

    return plan_meters(storage, participant, window, connector_type, catalog)


@task(task_run_name="plan/{participant.id}/{window}")
def plan_participant(data_root: str, participant: Participant, window) -> list[MeterWindow]:
    return _plan(open_storage(data_root, participant.id), participant, window)


@task(task_run_name="participants/{label}/{window}")
def collect_participants(
    data_root: str,
    participant_ids: list[str],
    window: HourWindow,
    shard_size: int,
    label: str,
    collect_one_shard: bool = True,
) -> list[Planned]:
    """Validate, plan and (when the plan fits one shard) collect and merge each participant
    in turn, in one of the flow's worker processes: a task run costs about 0.13 s there (a
    client, settings, state), so an hourly dispatch pays it a few times per worker, not once per
    participant. A participant that fails, fails alone."""
    done = []
    for participant_id in participant_ids:
        try:
            done.append(
                _collect_participant(
                    data_root, participant_id, window, shard_size, collect_one_shard
                )
            )
        except Exception as exc:  # the flow reports it, naming the participant
            done.append(Planned(participant_id, error=exc))
    return done


def _collect_participant(
    data_root: str, participant_id: str, window: HourWindow, shard_size: int, one_shard: bool
) -> Planned:
    storage = open_storage(data_root, participant_id)
    participant = read_configuration(storage)
    catalog = read_catalog(storage)
    planned = _plan(storage, participant, window, catalog)
    shards = shard(planned, shard_size)
    if not one_shard or len(shards) > 1:
        return Planned(participant_id, participant, planned)
    report = ShardReport()
    if shards:
        label = shard_label(0, 1, shards[0])
        report = _collect(data_root, storage, participant, planned, label, None, catalog)
    _merge(storage, participant, report.runs)
    return Planned(participant_id, participant, report=report)


@task(task_run_name="collect/{participant.id}/{label}")
def collect_shard(
    data_root: str,
    participant: Participant,
    planned: list[MeterWindow],
    label: str,
    force_override: bool | None = None,
) -> ShardReport:
    """Collect a shard's meter windows; a failing meter fails alone. Only a summary per meter
    and the key of the shard's run object go back to the caller."""
    storage = open_storage(data_root, participant.id)
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
    logger = get_run_logger()

    def connector_of(meter: Meter):
        return connector_for(
            meter,
            participant.id,
            access_for(meter),
            state_dir=Path(data_root) / ".platform",
            s3_client=s3_client_for(meter) if meter.connector.type == "s3" else None,
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
    for result, outcome in zip(run.results, report.outcomes, strict=True):
        if outcome.status == "failed":
            logger.error("%s/%s failed: %s", participant.id, result.meter, outcome.why)
        if result.deferred:
            logger.warning("%s: deferred: %s", result.meter, result.deferred)
        for reason in result.rejected:
            logger.warning("%s: quarantined: %s", result.meter, reason)
    logger.info(
        "%s/%s: %d meters, %d hours changed, %d missing",
        participant.id,
        label,
        len(planned),
        sum(o.hours_new for o in report.outcomes),
        sum(o.hours_missing for o in report.outcomes),
    )
    return report


@task(task_run_name="merge/{participant.id}")
def merge_runs(data_root: str, participant: Participant, runs: list[str]) -> int:
    """Upsert the shards' hours into the day files and record their runs in the catalog (and
    any run a lost flow left unmerged); the number of meter-hours that changed."""
    return _merge(open_storage(data_root, participant.id), participant, runs)


def _merge(storage: Storage, participant: Participant, runs: list[str]) -> int:
    now = datetime.now(UTC)
    changed = collect.merge(storage, participant, [*runs, *collect.unmerged(storage, now)], now)
    release_memory()
    return len(changed)
