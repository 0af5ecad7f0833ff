"""`meterflow doctor`: is everything the configured participants need in place?

Checks the Prefect API, the work pools `prefect.yaml` deploys to, every block the participants'
XML names, each participant's storage, and the warehouse; prints what is missing with the
command that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings

from blocks import GuardianPolicy, open_warehouse
from blocks.resolve import BLOCK_TYPES
from blocks.storage import ParticipantStorage, block_name, open_storage, participant_ids
from meterflow.participants import read_configuration
from meterflow.storage import CONFIG_KEY

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    fix: str = ""


def needed_blocks(data_root: str) -> tuple[list[tuple[type, str, str]], list[Check]]:
    """(block type, block name, who needs it) for every participant; unreadable configs."""
    needed, problems = [], []
    for participant_id in participant_ids(data_root):
        try:
            participant = read_configuration(open_storage(data_root, participant_id))
        except Exception as exc:  # unreachable storage is reported by storage_checks
            problems.append(Check(f"participant {participant_id}: configuration", False, str(exc)))
            continue
        for meter in participant.meters:
            block_type = BLOCK_TYPES.get(meter.connector.type)
            if block_type is not None and meter.credentials:
                needed.append((block_type, meter.credentials, f"{participant_id}/{meter.id}"))
            for job in meter.jobs:
                needed.append((GuardianPolicy, job.guardian, f"{participant_id}/{meter.id} MRV"))
    return needed, problems


def run_checks(data_root: str, warehouse: str, target: str = "local") -> list[Check]:
    checks = []
    api = get_current_settings().api.url or "a temporary local server (PREFECT_API_URL unset)"
    with get_client(sync_client=True) as client:
        healthy = client.api_healthcheck() is None
        checks.append(Check(f"Prefect API {api}", healthy, "start it: make ui"))
        for pool, kind in work_pools(target).items():
            try:
                found = client.read_work_pool(pool).type
                checks.append(
                    Check(f"work pool {pool} ({kind})", found == kind, f"it is a {found} pool")
                )
            except ObjectNotFound:
                fix = f"prefect work-pool create --type {kind} {pool}"
                checks.append(Check(f"work pool {pool} ({kind})", False, fix))
        for slug in result_blocks(target):
            block_type, name = slug.split("/", 1)
            try:
                client.read_block_document_by_name(name, block_type)
                checks.append(Check(f"result storage {slug}", True))
            except ObjectNotFound:
                fix = f"create the bucket and the {block_type} block {name!r} ({DEPLOY_DOCS})"
                checks.append(Check(f"result storage {slug}", False, fix))
        needed, problems = needed_blocks(data_root)
        checks.extend(problems)
        for block_type, name, who in sorted(set(needed), key=lambda n: (n[1], n[2])):
            slug = block_type.get_block_type_slug()
            try:
                client.read_block_document_by_name(name, slug)
                checks.append(Check(f"block {slug}/{name} ({who})", True))
            except ObjectNotFound:
                fix = (
                    f"prefect block register -m blocks, then create it in the UI or with "
                    f"{block_type.__name__}(...).save({name!r})"
                )
                checks.append(Check(f"block {slug}/{name} ({who})", False, fix))
    checks.extend(storage_checks(data_root))
    try:
        with open_warehouse(warehouse) as wh:
            wh.query("SELECT 1 AS ok")
        checks.append(Check(f"warehouse {warehouse}", True))
    except Exception as exc:  # any driver error means: not reachable as configured
        checks.append(Check(f"warehouse {warehouse}", False, f"{type(exc).__name__}: {exc}"))
    return checks


def storage_checks(data_root: str) -> list[Check]:
    """Each participant's storage answers and holds its configuration."""
    checks = []
    for participant_id in participant_ids(data_root):
        try:
            storage = open_storage(data_root, participant_id)
            where = type(storage).__name__
            found = storage.exists(CONFIG_KEY)
        except Exception as exc:  # any client error means: not reachable with its block
            block = f"{ParticipantStorage.get_block_type_slug()}/{block_name(participant_id)}"
            fix = f"{type(exc).__name__}: {exc}; check the bucket and credentials in block {block}"
            checks.append(Check(f"storage of {participant_id}", False, fix))
            continue
        fix = f"upload the participant's XML to {CONFIG_KEY} in its storage ({where})"
        checks.append(Check(f"storage of {participant_id} ({where})", found, fix))
    return checks


POOL_TYPES = {"local": "process", "gcp": "cloud-run-v2", "aws": "ecs"}


DEPLOY_DOCS = "docs/deploy-gcp.md, docs/deploy-aws.md"


def _deployments(target: str) -> list[dict]:
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    return [d for d in deployments if d["name"] == target]


def work_pools(target: str) -> dict[str, str]:
    """Pool name -> type, for the deployments of one prefect.yaml target (`local`, `gcp`, `aws`)."""
    return {d["work_pool"]["name"]: POOL_TYPES[target] for d in _deployments(target)}


def result_blocks(target: str) -> set[str]:
    """The result storage blocks the target's jobs write shard results to (cloud targets)."""
    return {
        env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"]
        for d in _deployments(target)
        if "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"
        in (env := d["work_pool"].get("job_variables", {}).get("env", {}))
    }
