"""prefect.yaml: every deployment's parameters fit its flow, and `prefect deploy --all` works
against a real local Prefect server."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parent.parent
PREFECT = ROOT / ".venv" / "bin" / "prefect"
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["entrypoint"])
def test_parameters_match_the_flow_signature(deployment):
    flow = load_flow_from_entrypoint(
        str(ROOT / deployment["entrypoint"]), use_placeholder_flow=False
    )
    required = {"participant_id": "acme", "start": "2026-04-01", "end": "2026-04-02"}
    parameters = {**deployment.get("parameters", {})}
    for name, value in required.items():
        if name in flow.parameters.required:
            parameters[name] = value
    flow.validate_parameters(parameters)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    assert "Successfully registered 6 blocks" in registered, registered
    block_types = requests.post(f"{url}/block_types/filter", json={}, timeout=10).json()
    assert {
        "wattwatchers-credentials",
        "solcast-credentials",
        "open-meteo-source",
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
        "load/on-demand",
        "aggregate/on-demand",
        "backfill/on-demand",
    }
    assert all(d["work_pool_name"] == "meterflow-process" for d in deployments)
    (schedule,) = names["dispatch/hourly"]["schedules"]
    assert schedule["schedule"]["cron"] == "5 * * * *"
    assert schedule["schedule"]["timezone"] == "UTC"
