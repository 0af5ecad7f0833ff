"""prefect.yaml: every deployment's parameters fit its flow, and `prefect deploy --all` works
against a real local Prefect server."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
import requests
import yaml
from prefect import flow
from prefect.deployments import run_deployment
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.collect import collect_participant
from meterflow.participants import read_configuration
from meterflow.plan import MeterWindow
from meterflow.shards import failures
from meterflow.storage import CONFIG_KEY, LocalStorage
from meterflow.timeutil import HourWindow
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
PREFECT = ROOT / ".venv" / "bin" / "prefect"
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["entrypoint"])
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
    """A real `prefect server start` on a free loopback port, stopped at the end."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("prefect server did not start:\n" + (tmp_path / "server.log").read_text())
        yield url, {**env, "PREFECT_API_URL": url}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.server
def test_blocks_register_and_prefect_deploy_all_registers_every_deployment(prefect_api):
    url, env = prefect_api

    def prefect(*args: str) -> str:
        out = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    prefect("work-pool", "create", "--type", "process", "meterflow-process")
    registered = prefect("block", "register", "-m", "blocks")
    assert "Successfully registered 7 blocks" in registered, registered
    block_types = requests.post(f"{url}/block_types/filter", json={}, timeout=10).json()
    assert {
        "wattwatchers-credentials",
        "solcast-credentials",
        "open-meteo-source",
        "guardian-policy",
        "meterflow-duckdb",
        "meterflow-postgresql",
        "meterflow-bigquery",
    } <= {b["slug"] for b in block_types}
    prefect("--no-prompt", "deploy", "--all")
    deployments = requests.post(f"{url}/deployments/filter", json={}, timeout=10).json()
    flows = {f["id"]: f["name"] for f in requests.post(f"{url}/flows/filter", json={}).json()}
    names = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments}
    assert set(names) == {
        "dispatch/hourly",
        "collect/on-demand",
        "collect-shard/on-demand",
        "load/on-demand",
        "aggregate/on-demand",
        "backfill/on-demand",
        "mrv/on-demand",
    }
    assert all(d["work_pool_name"] == "meterflow-process" for d in deployments)
    (schedule,) = names["dispatch/hourly"]["schedules"]
    assert schedule["schedule"]["cron"] == "5 * * * *"
    assert schedule["schedule"]["timezone"] == "UTC"


SHARDED = """<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      {meters}
    </property>
  </properties>
</participant>"""
METER = """<meter id="{id}" dataType="energy">
        <csv path="exports/{id}/" kind="interval" unit="kWh" intervalMinutes="30"/></meter>"""
METERS = ["m1", "m2", "m3"]


def sharded_participant(data_root: Path) -> None:
    """Three CSV meters with one UTC day of half-hourly energy each."""
    storage = LocalStorage(data_root, "acme")
    meters = "".join(METER.format(id=m) for m in METERS)
    storage.write(CONFIG_KEY, SHARDED.format(meters=meters).encode())
    for n, meter in enumerate(METERS, start=1):
        rows = "".join(f"2026-04-01T{h // 2:02d}:{30 * (h % 2):02d}:00Z,{n}\n" for h in range(48))
        storage.write(f"exports/{meter}/day.csv", ("timestamp,value\n" + rows).encode())


@pytest.mark.server
def test_dispatch_in_deployments_mode_runs_each_shard_on_the_work_pool(prefect_api, tmp_path):
    url, env = prefect_api
    for args in (
        ["work-pool", "create", "--type", "process", "meterflow-process"],
        ["--no-prompt", "deploy", "--all"],
    ):
        out = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    data_root = tmp_path / "data"
    sharded_participant(data_root)
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "meterflow-process"],
        cwd=ROOT,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            run = run_deployment(
                "dispatch/hourly",
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
        worker.terminate()
        worker.wait(timeout=30)
        worker_log.close()
    assert run.state.is_completed(), (tmp_path / "worker.log").read_text()[-3000:]
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
