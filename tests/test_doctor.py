"""`meterflow doctor` against a real Prefect API: it names what is missing and how to fix it."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

from blocks import WattwatchersCredentials
from flows.doctor import run_checks
from meterflow.storage import CONFIG_KEY, LocalStorage

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


def by_name(checks):
    return {c.what: c for c in checks}


def test_doctor_names_missing_pools_and_blocks_with_the_fix(prefect_server, tmp_path):
    data_root = tmp_path / "data"
    LocalStorage(data_root, "doc").write(CONFIG_KEY, CONFIG.encode())
    warehouse = str(tmp_path / "warehouse.duckdb")
    checks = by_name(run_checks(str(data_root), warehouse))
    ww = checks["block wattwatchers-credentials/doctor-ww (doc/pv)"]
    guardian = checks["block guardian-policy/doctor-guardian (doc/pv MRV)"]
    assert not ww.ok and "WattwatchersCredentials(...).save('doctor-ww')" in ww.fix
    assert not guardian.ok and "GuardianPolicy(...).save('doctor-guardian')" in guardian.fix
    assert checks["storage of doc (LocalStorage)"].ok and checks[f"warehouse {warehouse}"].ok
    WattwatchersCredentials(api_key="key_" + "d0c7" * 8).save("doctor-ww", overwrite=True)
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
