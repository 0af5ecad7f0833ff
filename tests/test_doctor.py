"""`meterflow doctor` against a real Prefect API: it names what is missing and how to fix it,
and whether the API (whose blocks hold every participant's secrets) answers without credentials."""

from __future__ import annotations

import base64
import ipaddress
import socket
import subprocess

import pytest
import requests
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

from blocks import WattwatchersCredentials
from flows.doctor import run_checks
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from tests.processes import ROOT, prefect_server, talking_to

CONFIG = """<participant id="doc" name="Doc">
  <properties>
    <property id="p" name="P" timezone="Australia/Sydney" country="AU" region="NSW"
              floorArea="100">
      <meter id="pv" dataType="solar" credentials="doctor-ww" deviceId="D100000000007">
        <wattwatchers device="D100000000007" channels="Solar inverter"/>
        <job type="mrv" start="2026-04-01" interval="1d" guardian="doctor-guardian"/>
      </meter>
    </property>
  </properties>
</participant>"""


KEY = "key_" + "d0c7" * 8
AUTH = "meterflow-admin:" + "pw-d0c7" * 3
OPEN = "Prefect API refuses requests without credentials"


def by_name(checks):
    return {c.what: c for c in checks}


def participant_data(tmp_path):
    data_root = tmp_path / "data"
    LocalStorage(data_root, "doc").write(CONFIG_KEY, CONFIG.encode())
    return data_root


def stranger_reads_blocks(url: str) -> requests.Response:
    """What anyone who reaches the API can ask for, without credentials."""
    blocks = f"{url}/block_types/slug/wattwatchers-credentials/block_documents"
    return requests.get(blocks, params={"include_secrets": "true"}, timeout=10)


def test_doctor_names_missing_pools_and_blocks_with_the_fix(prefect_server, tmp_path):
    data_root = participant_data(tmp_path)
    warehouse = str(tmp_path / "warehouse.duckdb")
    checks = by_name(run_checks(str(data_root), warehouse))
    # The test server is open but on 127.0.0.1: a note, not a failure.
    loopback = checks["Prefect API answers without credentials, on loopback"]
    assert loopback.ok and "only this machine reaches 127.0.0.1" in loopback.note
    assert "PREFECT_SERVER_API_AUTH_STRING" in loopback.note and OPEN not in checks
    ww = checks["block wattwatchers-credentials/doctor-ww (doc/pv)"]
    guardian = checks["block guardian-policy/doctor-guardian (doc/pv MRV)"]
    assert not ww.ok and "WattwatchersCredentials(...).save('doctor-ww')" in ww.fix
    assert not guardian.ok and "GuardianPolicy(...).save('doctor-guardian')" in guardian.fix
    assert checks["storage of doc (LocalStorage)"].ok and checks[f"warehouse {warehouse}"].ok
    WattwatchersCredentials(api_key=KEY).save("doctor-ww", overwrite=True)
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="meterflow-process", type="process"))
    again = by_name(run_checks(str(data_root), warehouse))
    assert again["block wattwatchers-credentials/doctor-ww (doc/pv)"].ok
    assert again["work pool meterflow-process (process)"].ok
    cloud = by_name(run_checks(str(data_root), warehouse, "gcp"))
    fix = "prefect work-pool create --type cloud-run-v2 meterflow-cloud-run"
    assert cloud["work pool meterflow-cloud-run (cloud-run-v2)"].fix == fix
    assert not cloud["result storage gcs-bucket/meterflow-results"].ok
    assert not again["block guardian-policy/doctor-guardian (doc/pv MRV)"].ok
    missing = by_name(run_checks(str(data_root), "meterflow-postgresql/nowhere"))
    assert not missing["warehouse meterflow-postgresql/nowhere"].ok
    assert "nowhere" in missing["warehouse meterflow-postgresql/nowhere"].fix


def doctor(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    """`meterflow doctor` as an operator runs it, in the given environment."""
    data_root, warehouse = participant_data(tmp_path), tmp_path / "warehouse.duckdb"
    command = [ROOT / ".venv" / "bin" / "meterflow", "doctor", "--data-root", str(data_root)]
    command += ["--warehouse", str(warehouse)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.server
def test_a_server_with_basic_auth_refuses_strangers_and_serves_its_clients(tmp_path):
    with prefect_server(tmp_path / "prefect", auth_string=AUTH) as (url, env):
        assert stranger_reads_blocks(url).status_code == 401
        listing = requests.post(f"{url}/block_documents/filter", json={}, timeout=10)
        assert listing.status_code == 401
        with talking_to(url, AUTH):
            WattwatchersCredentials(api_key=KEY).save("doctor-ww")
            assert WattwatchersCredentials.load("doctor-ww").api_key.get_secret_value() == KEY
        report = doctor(env, tmp_path)
        assert f"ok      Prefect API {url}\nok      {OPEN}\n" in report.stdout
        assert "ok      block wattwatchers-credentials/doctor-ww (doc/pv)" in report.stdout
        without = doctor({k: v for k, v in env.items() if k != "PREFECT_API_AUTH_STRING"}, tmp_path)
    assert without.returncode == 1 and without.stderr == ""
    assert without.stdout.splitlines() == [
        f"MISSING Prefect API {url}",
        "        fix: it refused this client (HTTP 401): set PREFECT_API_AUTH_STRING to the "
        "server's PREFECT_SERVER_API_AUTH_STRING, or PREFECT_API_KEY for Prefect Cloud "
        "(docs/security.md)",
        "0 ok, 1 missing",
    ]
    token = base64.b64encode(AUTH.encode()).decode()
    for output in (report.stdout, report.stderr, without.stdout):
        assert AUTH.split(":")[1] not in output and token not in output


def network_address() -> str | None:
    """This machine's address on the interface it reaches other hosts with, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # UDP: picks the interface, sends nothing
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.mark.server
def test_an_open_server_on_the_network_is_reported_missing_with_the_fix(tmp_path):
    """The self-hosted server as the deploy docs used to leave it: no auth, plain HTTP, on an
    address other machines reach (only test data in it, for the seconds the test runs)."""
    address = network_address() or pytest.skip("no network interface besides loopback")
    with prefect_server(tmp_path / "prefect", host=address) as (url, _):
        with talking_to(url):
            WattwatchersCredentials(api_key=KEY).save("doctor-ww")
            data_root = participant_data(tmp_path)
            checks = by_name(run_checks(str(data_root), str(tmp_path / "warehouse.duckdb")))
        assert stranger_reads_blocks(url).json()[0]["data"]["api_key"] == KEY
    assert checks[f"Prefect API {url}"].ok
    open_api = checks[OPEN]
    assert not open_api.ok and f"it answered one (HTTP 200): whoever reaches {url}" in open_api.fix
    assert "PREFECT_SERVER_API_AUTH_STRING=<user>:<password> on the server" in open_api.fix
    assert "or use Prefect Cloud" in open_api.fix
    assert not checks["Prefect API over HTTPS"].ok
