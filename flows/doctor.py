"""`meterflow doctor`: is everything the configured participants need in place?

Checks the Prefect API (and that it refuses requests without credentials: its blocks hold every
participant's source keys and Guardian passwords), the work pools `prefect.yaml` deploys to, every
block the participants' XML names, each participant's storage, and the warehouse; prints what is
missing with the command that fixes it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import get_current_settings

from blocks import GuardianPolicy, open_warehouse
from blocks.resolve import block_type_for
from blocks.storage import ParticipantStorage, block_name, open_storage, participant_ids
from meterflow.common.storage import CONFIG_KEY
from meterflow.configuration.participants import read_configuration

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    fix: str = ""
    note: str = ""  # shown under a check that is ok but worth knowing about


REFUSED = {401, 403}  # what an API, or the proxy in front of it, answers without credentials
SECURITY_DOCS = "docs/security.md"
PROTECT = (
    "set PREFECT_SERVER_API_AUTH_STRING=<user>:<password> on the server and "
    "PREFECT_API_AUTH_STRING to the same on every worker, job and operator, behind HTTPS; "
    f"or use Prefect Cloud ({SECURITY_DOCS})"
)


def needed_blocks(data_root: str) -> tuple[list[tuple[str, str, str, str]], list[Check]]:
    """(block type slug, block name, who needs it, how to make one) for every participant;
    unreadable configs."""
    needed, problems = [], []
    for participant_id in participant_ids(data_root):
        try:
            participant = read_configuration(open_storage(data_root, participant_id))
        except Exception as exc:  # unreachable storage is reported by storage_checks
            problems.append(Check(f"participant {participant_id}: configuration", False, str(exc)))
            continue
        for meter in participant.meters:
            block_type = block_type_for(meter.connector.type)
            if block_type is not None and meter.credentials:
                needed.append(_block(block_type, meter.credentials, f"{participant_id}/{meter.id}"))
            for job in meter.mrv_jobs:
                needed.append(
                    _block(GuardianPolicy, job.guardian, f"{participant_id}/{meter.id} MRV")
                )
        if participant.notify:
            slug, name = participant.notify.split("/")
            made = "a notification block (Slack, email, webhook, ...) in the UI"
            needed.append((slug, name, f"{participant_id} alerts", made))
    return needed, problems


def _block(block_type: type, name: str, who: str) -> tuple[str, str, str, str]:
    made = (
        "prefect block register -m blocks, then create it in the UI or with "
        f"{block_type.__name__}(...).save({name!r})"
    )
    return block_type.get_block_type_slug(), name, who, made


def run_checks(data_root: str, warehouse: str, target: str = "local") -> list[Check]:
    with get_client(sync_client=True) as client:
        checks = api_checks(client)
        if not checks[0].ok:
            return checks  # pools, blocks, storage and warehouse blocks all need the API
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
        for slug, name, who, made in sorted(set(needed), key=lambda n: (n[1], n[2])):
            try:
                client.read_block_document_by_name(name, slug)
                checks.append(Check(f"block {slug}/{name} ({who})", True))
            except ObjectNotFound:
                checks.append(Check(f"block {slug}/{name} ({who})", False, made))
    checks.extend(storage_checks(data_root))
    try:
        with open_warehouse(warehouse) as wh:
            wh.query("SELECT 1 AS ok")
        checks.append(Check(f"warehouse {warehouse}", True))
    except Exception as exc:  # any driver error means: not reachable as configured
        checks.append(Check(f"warehouse {warehouse}", False, f"{type(exc).__name__}: {exc}"))
    return checks


def api_checks(client: SyncPrefectClient) -> list[Check]:
    """The API answers this client (the first check: can the API be used at all?), and
    refuses requests without credentials."""
    url = _without_userinfo(str(client.api_url).rstrip("/"))
    temporary = "a temporary local server (PREFECT_API_URL unset)"
    api = f"Prefect API {url if get_current_settings().api.url else temporary}"
    if (error := client.api_healthcheck()) is not None:
        return [Check(api, False, f"{type(error).__name__}; start it: make ui")]
    try:
        client.hello()
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code not in REFUSED:
            raise
        fix = (
            f"it refused this client (HTTP {exc.response.status_code}): set "
            "PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING, or "
            f"PREFECT_API_KEY for Prefect Cloud ({SECURITY_DOCS})"
        )
        return [Check(api, False, fix)]
    return [Check(api, True), *exposure_checks(url)]


def exposure_checks(url: str) -> list[Check]:
    """Whether the API answers someone without credentials, and over what. An open API on
    loopback is a note: only this machine reaches it (the demo, `make ui`, the tests)."""
    protected = "Prefect API refuses requests without credentials"
    try:
        status = stranger_status(url)
    except httpx.HTTPError as exc:
        return [Check(protected, False, f"{type(exc).__name__}: {exc}")]
    if on_loopback(url):
        if status in REFUSED:
            return [Check(protected, True)]
        note = (
            "only this machine reaches 127.0.0.1 (fine for the demo and tests); a server "
            f"others reach needs protecting: {PROTECT}"
        )
        return [Check("Prefect API answers without credentials, on loopback", True, "", note)]
    fix = (
        f"it answered one (HTTP {status}): whoever reaches {url} can read every block, with "
        f"the participants' source keys and Guardian passwords; {PROTECT}"
    )
    tls = (
        "credentials and block secrets cross the network in clear text: serve the API "
        f"behind TLS and use an https:// PREFECT_API_URL ({SECURITY_DOCS})"
    )
    return [
        Check(protected, status in REFUSED, fix),
        Check("Prefect API over HTTPS", urlsplit(url).scheme == "https", tls),
    ]


def stranger_status(api_url: str) -> int:
    """The HTTP status a request without any credentials gets when it reads block documents."""
    settings = get_current_settings().api
    verify: ssl.SSLContext | bool = not settings.tls_insecure_skip_verify
    if verify and settings.ssl_cert_file:
        verify = ssl.create_default_context(cafile=settings.ssl_cert_file)
    url = f"{api_url}/block_types/slug/secret/block_documents"
    return httpx.get(url, timeout=10, verify=verify).status_code


def on_loopback(url: str) -> bool:
    """Whether the URL's host is this machine's loopback interface only (e.g. 127.0.0.1)."""
    try:
        infos = socket.getaddrinfo(urlsplit(url).hostname, None)
    except (OSError, UnicodeError):
        return False
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _without_userinfo(url: str) -> str:
    """The URL without any user:password in it, to print and to send a stranger's request to."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


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
