"""prefect.yaml: every deployment's parameters fit its flow, `prefect deploy --all` ships all
three targets to a real Prefect server, and deployments mode runs shards on a real worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import duckdb
import pytest
import requests
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs
from prefect import flow
from prefect.deployments import run_deployment
from prefect.flows import load_flow_from_entrypoint

from emulators.google_oauth import GoogleOAuthEmulator
from flows.collect import collect_participant
from meterflow.collection.plan import MeterWindow
from meterflow.collection.shards import failures
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.fleets import csv_meter, participant_xml
from meterflow.configuration.participants import read_configuration
from tests.processes import ROOT, prefect_cli, prefect_server, start_worker, talking_to

DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize(
    "deployment", DEPLOYMENTS, ids=lambda d: f"{d['entrypoint'].split(':')[1]}/{d['name']}"
)
def test_parameters_match_the_flow_signature(deployment):
    flow = load_flow_from_entrypoint(
        str(ROOT / deployment["entrypoint"]), use_placeholder_flow=False
    )
    required = {
        "participant_id": "acme",
        "start": "2026-04-01",
        "end": "2026-04-02",
        "windows": {"main": ["2026-04-01T00:00+00:00", "2026-04-02T00:00+00:00"]},
    }
    parameters = {**deployment.get("parameters", {})}
    for name, value in required.items():
        if name in flow.parameters.required:
            parameters[name] = value
    flow.validate_parameters(parameters)


@pytest.fixture
def prefect_api(tmp_path):
    """A real `prefect server start` (SQLite), stopped at the end."""
    with prefect_server(tmp_path / "prefect") as api:
        yield api


TARGET_ENV = {
    "METERFLOW_IMAGE": "europe-docker.pkg.dev/meterflow-test/meterflow/worker:0.1.0",
    "METERFLOW_GCP_REGION": "australia-southeast1",
    "METERFLOW_GCP_SERVICE_ACCOUNT": "meterflow-runs@meterflow-test.iam.gserviceaccount.com",
    "METERFLOW_CODE_BUCKET": "meterflow-test-code",
    "METERFLOW_ECS_CLUSTER": "meterflow",
    "METERFLOW_ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/meterflow-task",
    "METERFLOW_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/meterflow-exec",
    "METERFLOW_GIT_REPOSITORY": str(ROOT),
}
DEPLOYER = "deployer@meterflow-test.iam.gserviceaccount.com"


def test_every_step_reference_names_an_earlier_step():
    """A mistyped step id is not reported by `prefect deploy`: check the ids here."""
    for deployment in DEPLOYMENTS:
        ids = set()
        for step in [*deployment.get("push", []), *deployment.get("pull", [])]:
            ((_, spec),) = step.items()
            for reference in re.findall(r"{{\s*([\w-]+)\.\w+\s*}}", yaml.safe_dump(spec)):
                assert reference in ids | {"prefect"}, (deployment["name"], reference)
            ids.add(spec.get("id"))


@pytest.mark.server
def test_blocks_register_and_prefect_deploy_all_ships_every_target(
    prefect_api, gcs_endpoint, tmp_path
):
    with GoogleOAuthEmulator() as oauth:
        deploy_every_target(prefect_api, gcs_endpoint, oauth, tmp_path)
        assert set(oauth.grants) == {DEPLOYER}  # pushed and pulled with the deployer's account


def deploy_every_target(prefect_api, gcs_endpoint, oauth, tmp_path):
    """All 21 deployments deploy to real process, cloud-run-v2 and ecs pools; the GCP ones push
    the code to a bucket (the GCS emulator), and each target's pull steps fetch it back."""
    url, env = prefect_api
    branch = subprocess.run(
        ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    deployer = tmp_path / "deployer.json"  # application default credentials, as after gcloud
    deployer.write_text(json.dumps(oauth.service_account(DEPLOYER, "meterflow-test")))
    env = {**env, **TARGET_ENV, "METERFLOW_GIT_BRANCH": branch}
    env |= {"STORAGE_EMULATOR_HOST": gcs_endpoint, "GOOGLE_APPLICATION_CREDENTIALS": str(deployer)}
    gcs.Client(
        project="meterflow-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_endpoint},
    ).create_bucket(TARGET_ENV["METERFLOW_CODE_BUCKET"])
    for kind, pool in (
        ("process", "meterflow-process"),
        ("cloud-run-v2", "meterflow-cloud-run"),
        ("ecs", "meterflow-ecs"),
    ):
        prefect_cli(env, "work-pool", "create", "--type", kind, pool)
    registered = prefect_cli(env, "block", "register", "-m", "blocks")
    assert "Successfully registered 9 blocks" in registered, registered
    block_types = requests.post(f"{url}/block_types/filter", json={}, timeout=10).json()
    assert {
        "wattwatchers-credentials",
        "solcast-credentials",
        "electricity-maps-credentials",
        "open-meteo-source",
        "guardian-policy",
        "meterflow-duckdb",
        "meterflow-postgresql",
        "meterflow-bigquery",
        "meterflow-participant-storage",
    } <= {b["slug"] for b in block_types}
    prefect_cli(env, "--no-prompt", "deploy", "--all")
    deployments = requests.post(f"{url}/deployments/filter", json={}, timeout=10).json()
    flows = {f["id"]: f["name"] for f in requests.post(f"{url}/flows/filter", json={}).json()}
    names = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments}
    flow_names = ["dispatch", "collect", "collect-shard", "load", "aggregate", "backfill", "mrv"]
    pools = {"local": "meterflow-process", "gcp": "meterflow-cloud-run", "aws": "meterflow-ecs"}
    assert set(names) == {f"{f}/{target}" for f in flow_names for target in pools}
    for name, deployment in names.items():
        assert deployment["work_pool_name"] == pools[name.split("/")[1]], name
    for target in pools:
        (schedule,) = names[f"dispatch/{target}"]["schedules"]
        cron = schedule["schedule"]
        assert (cron["cron"], cron["timezone"]) == ("5 * * * *", "UTC")
    cloud_run = names["collect-shard/gcp"]["job_variables"]
    assert cloud_run["image"] == TARGET_ENV["METERFLOW_IMAGE"]
    assert cloud_run["region"] == "australia-southeast1"
    assert (cloud_run["cpu"], cloud_run["memory"], cloud_run["timeout"]) == ("2000m", "4Gi", 3600)
    assert cloud_run["service_account_name"] == TARGET_ENV["METERFLOW_GCP_SERVICE_ACCOUNT"]
    ecs = names["collect-shard/aws"]["job_variables"]
    assert (ecs["cpu"], ecs["memory"], ecs["launch_type"]) == (2048, 4096, "FARGATE")
    assert names["dispatch/gcp"]["parameters"]["shard_deployment"] == "collect-shard/gcp"
    assert names["dispatch/aws"]["parameters"]["shard_deployment"] == "collect-shard/aws"

    for target in ("gcp", "aws"):
        workdir = tmp_path / f"pulled-{target}"
        workdir.mkdir()
        pulled = pull_code(names[f"dispatch/{target}"]["pull_steps"], workdir, env)
        assert (pulled / "flows" / "dispatch.py").is_file(), target
        assert (pulled / "configs" / "participant.xsd").is_file(), target
        assert not (pulled / ".venv").exists(), target


def pull_code(steps: list[dict], workdir: Path, env: dict[str, str]) -> Path:
    """Run a deployment's stored pull steps in `workdir`, as a worker's flow run does first."""
    script = (
        "import asyncio, json, os, sys\n"
        "from prefect.deployments.steps.core import run_steps\n"
        "asyncio.run(run_steps(json.loads(sys.argv[1])))\n"
        "print(os.getcwd())\n"
    )
    out = subprocess.run(
        [ROOT / ".venv" / "bin" / "python", "-c", script, json.dumps(steps)],
        cwd=workdir, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


METERS = ["m1", "m2", "m3"]


def sharded_participant(data_root: Path) -> None:
    """Three CSV meters with one UTC day of half-hourly energy each."""
    storage = LocalStorage(data_root, "acme")
    storage.write(CONFIG_KEY, participant_xml("acme", [csv_meter(m, 30) for m in METERS]))
    for n, meter in enumerate(METERS, start=1):
        rows = "".join(f"2026-04-01T{h // 2:02d}:{30 * (h % 2):02d}:00Z,{n}\n" for h in range(48))
        storage.write(f"exports/{meter}/day.csv", ("timestamp,value\n" + rows).encode())


@pytest.mark.server
def test_dispatch_in_deployments_mode_runs_each_shard_on_the_work_pool(prefect_api, tmp_path):
    url, env = prefect_api
    prefect_cli(env, "work-pool", "create", "--type", "process", "meterflow-process")
    prefect_cli(env, "--no-prompt", "deploy", "-n", "*/local")
    data_root = tmp_path / "data"
    sharded_participant(data_root)
    worker = start_worker(env, "only", tmp_path / "worker.log")
    try:
        with talking_to(url):
            run = run_deployment(
                "dispatch/local",
                parameters={
                    "start": "2026-04-01T00:00+00:00",
                    "end": "2026-04-02T00:00+00:00",
                    "data_root": str(data_root),
                    "warehouse": str(data_root / "warehouse.duckdb"),
                    "mode": "deployments",
                    "shard_size": 2,
                },
                timeout=240,
                poll_interval=1,
            )
            shards = requests.post(
                f"{url}/flow_runs/filter",
                json={"flow_runs": {"parent_flow_run_id": {"any_": [str(run.id)]}}},
                timeout=10,
            ).json()
            failed = ghost_shard(data_root)
    finally:
        worker.stop()
    assert run.state.is_completed(), worker.text()[-3000:]
    shard_runs = sorted(r["name"] for r in shards if r["name"].startswith("collect-shard/"))
    assert shard_runs == [
        "collect-shard/acme/shard-1-of-2 (m1..m2)",
        "collect-shard/acme/shard-2-of-2 (m3..m3)",
    ]
    assert all(r["state_type"] == "COMPLETED" for r in shards)
    with duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True) as con:
        per_meter = con.execute(
            "SELECT meter_id, count(*), sum(value) FROM fact_meter_hourly GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert per_meter == [("m1", 24, 48.0), ("m2", 24, 96.0), ("m3", 24, 144.0)]
    (line,) = failed
    assert line.startswith("acme/shard-1-of-1 (ghost..ghost): shard run collect-shard/acme/")
    assert "ended Failed" in line


def ghost_shard(data_root: Path) -> list[str]:
    """A shard naming a meter the participant does not have fails, and is reported by name."""

    @flow
    def one_bad_shard() -> list[str]:
        participant = read_configuration(LocalStorage(data_root, "acme"))
        window = HourWindow.parse("2026-04-01T00:00", "2026-04-01T01:00")
        report = collect_participant(
            str(data_root), participant, [MeterWindow("ghost", window, 1)], mode="deployments"
        )
        return failures(report.outcomes)

    return one_bad_shard()


def test_worker_image_installs_every_runtime_dependency_at_its_locked_version():
    """The Dockerfile builds on the Python the tests ran on and installs pyproject's runtime
    dependencies constrained by the lock, so each one must have an exact pin there."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    (python,) = re.findall(r"^FROM python:(\d+\.\d+)\.\d+-slim", dockerfile, re.M)
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "--constraint requirements.lock" in dockerfile
    pinned = {
        re.split(r"[=\[]", line)[0].lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=\[ ;]", requirement)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in requirements.lock"
