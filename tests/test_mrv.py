"""MRV against the Guardian emulator on loopback and a real DuckDB warehouse: records, payloads
computed by hand, exactly-once submission across a real crash, token expiry, rejections."""

from __future__ import annotations

import base64
import multiprocessing
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from emulators.guardian import GuardianEmulator
from meterflow.http import Caller
from meterflow.mrv.document import Policy, public_key, verify_signature
from meterflow.mrv.guardian import GuardianClient
from meterflow.mrv.run import extract_and_verify, submit_pending
from meterflow.mrv.store import MrvStore, job_overview
from meterflow.participant_xml import load_participant
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.loads import load_configuration, load_emission_factors, load_meter_hours

TAG, POLICY_ID = "Tag_1758892814008", "6650f1c2a1b2c3d4e5f60718"
PASSWORD = "guardian-pw-" + "7e57" * 4
DEVICE_KEY = base64.b64encode(bytes(range(32))).decode()
CONFIG = """<participant id="acme" name="Acme">
  <properties>
    <property id="syd" name="Sydney" timezone="Australia/Sydney" country="AU" region="NSW"
              floorArea="100">
      <meter id="main" dataType="energy" deviceId="D100000000001">
        <csv path="exports/main/" kind="interval" unit="kWh"/>
        <job type="mrv" start="2026-04-01" end="2026-05-01" interval="{interval}"
             guardian="acme-guardian" mrv_ratedKw="50"/>
      </meter>
    </property>
  </properties>
</participant>"""
# April 2026 in Sydney: 1 April 00:00 AEDT (+11) = 31 March 13:00 UTC, to 1 May 00:00 AEST (+10)
# = 30 April 14:00 UTC; daylight saving ends on 5 April, so the month has 30 x 24 + 1 = 721 hours.
APRIL = pd.date_range("2026-03-31T13:00Z", "2026-04-30T14:00Z", freq="h", inclusive="left")
NOW = datetime(2026, 5, 2, tzinfo=UTC)


@pytest.fixture
def guardian():
    with GuardianEmulator(users={"meterflow": PASSWORD}, policies={TAG: POLICY_ID}) as emulator:
        yield emulator


def policy_for(emulator: GuardianEmulator, readback: bool = True) -> Policy:
    return Policy(
        base_url=emulator.url,
        username="meterflow",
        password=PASSWORD,
        owner_did="did:hedera:testnet:installer_0.0.1001",
        policy_id=POLICY_ID,
        policy_tag=TAG,
        account_id="0.0.4512345",
        device_did="did:hedera:testnet:device_0.0.2002",
        device_key=DEVICE_KEY,
        schema_context="https://ipfs.io/ipfs/bafkschema",
        schema_type="9f6b7a1e-mrv",
        readback_block="mrv_source" if readback else None,
    )


def client_for(policy: Policy, timeout=(5.0, 20.0)) -> GuardianClient:
    return GuardianClient(
        policy, Caller("acme", "main", "guardian", "acme-guardian"), timeout=timeout
    )


def participant(interval: str = "1mo"):
    return load_participant(CONFIG.format(interval=interval).encode())


def warehouse_with(path, values: pd.Series, quality: str = "measured", interval: str = "1mo"):
    """A DuckDB warehouse holding the meter's hours (values indexed by UTC hour)."""
    acme = participant(interval)
    rows = pd.DataFrame(
        {
            "hour_utc": values.index,
            "value": values.to_numpy(),
            "unit": "kWh",
            "quality": quality,
            "coverage": 1.0,
        }
    )
    with DuckDBWarehouse(path) as wh:
        wh.prepare()
        load_configuration(wh, acme, NOW)
        load_emission_factors(wh)
        load_meter_hours(wh, acme, {"main": rows})
    return acme


def run(path, acme, policy: Policy, client: GuardianClient | None = None):
    client = client or client_for(policy)
    with DuckDBWarehouse(path) as wh:
        store = MrvStore(wh)
        touched = extract_and_verify(wh, store, acme, NOW, NOW)
        sent = submit_pending(store, acme, lambda block: client, NOW)
        return touched, sent, store.records(acme.id)


def posts(emulator: GuardianEmulator) -> int:
    return sum(r.method == "POST" and r.path == "/api/v1/external" for r in emulator.requests)


def test_a_month_gives_one_record_with_the_payload_computed_by_hand(guardian, tmp_path):
    acme = warehouse_with(tmp_path / "wh.duckdb", pd.Series(2.0, index=APRIL))
    touched, _, (record,) = run(tmp_path / "wh.duckdb", acme, policy_for(guardian))
    assert [r.status for r in touched] == ["verified"] and record.status == "submitted"
    (document,) = guardian.documents(TAG)
    subject = document["credentialSubject"][0]
    assert subject["mrvEnergyAmount"] == 1442.0  # 721 hours x 2 kWh
    assert subject["mrvCarbonAmount"] == pytest.approx(0.95172)  # 1442 kWh x 0.66 kg/kWh / 1000
    assert subject["mrvDuration"] == 721 * 3_600_000
    assert subject["mrvTimestamp"] == "2026-03-31T13:00:00.000Z"
    assert (subject["policyId"], subject["accountId"]) == (POLICY_ID, "0.0.4512345")
    assert guardian.received[0].owner == "did:hedera:testnet:installer_0.0.1001"
    assert verify_signature(document, public_key(DEVICE_KEY))
    tampered = {**document, "credentialSubject": [{**subject, "mrvEnergyAmount": 9999.0}]}
    assert not verify_signature(tampered, public_key(DEVICE_KEY))
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        history = MrvStore(wh).transitions(record.record_id)
    assert list(zip(history.from_status, history.to_status, strict=True)) == [
        (None, "extracted"),
        ("extracted", "verified"),
        ("verified", "submitting"),
        ("submitting", "submitted"),
    ]
    assert "read-back" in history.reason.iloc[-1]


def test_rerunning_sends_nothing_the_second_time(guardian, tmp_path):
    acme = warehouse_with(tmp_path / "wh.duckdb", pd.Series(2.0, index=APRIL), interval="1d")
    touched, sent, records = run(tmp_path / "wh.duckdb", acme, policy_for(guardian))
    assert len(records) == 30 and {r.status for r in records} == {"submitted"}
    first = posts(guardian)
    touched, sent, again = run(tmp_path / "wh.duckdb", acme, policy_for(guardian))
    assert (touched, sent, posts(guardian)) == ([], [], first)
    assert again == records
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        (job,) = job_overview(wh, "acme").to_dict("records")
    assert (job["job_id"], job["submitted"], job["rejected"]) == ("main/mrv-1d-20260401", 30, 0)
    assert job["last_task_id"] == "main/mrv-1d-20260401@2026-04-29T14:00Z"
    assert job["last_task_status"] == "submitted"


def _submit_in_child(path: str, policy: Policy) -> None:
    acme = participant()
    with DuckDBWarehouse(path) as wh:
        store = MrvStore(wh)
        extract_and_verify(wh, store, acme, NOW, NOW)
        submit_pending(store, acme, lambda block: client_for(policy, timeout=(5.0, 60.0)), NOW)


def crash_while_guardian_holds_the_reply(guardian, path, policy: Policy) -> None:
    """Submit in a real process and kill it after Guardian stored the document but before it
    answered: the crash lands between Guardian accepting and `submitted` being stored."""
    guardian.stall_after_accept(60)
    child = multiprocessing.get_context("fork").Process(
        target=_submit_in_child, args=(str(path), policy)
    )
    child.start()
    deadline = time.monotonic() + 30
    while not guardian.received and time.monotonic() < deadline:
        time.sleep(0.05)
    child.kill()
    child.join()


def test_a_crash_after_guardian_accepted_is_reconciled_without_a_second_document(
    guardian, tmp_path
):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    policy = policy_for(guardian)
    crash_while_guardian_holds_the_reply(guardian, path, policy)
    assert len(guardian.received) == 1
    with DuckDBWarehouse(path) as wh:
        (left,) = MrvStore(wh).records("acme")
    assert left.status == "submitting"  # the crash came before `submitted` was stored
    _, _, (record,) = run(path, acme, policy)
    assert record.status == "submitted" and len(guardian.received) == 1
    assert posts(guardian) == 1
    assert "interrupted submission" in record.confirmation or "read-back" in record.confirmation


def test_a_crash_with_no_read_back_goes_to_review_and_is_not_resent(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    policy = policy_for(guardian, readback=False)
    crash_while_guardian_holds_the_reply(guardian, path, policy)
    _, _, (record,) = run(path, acme, policy)
    assert record.status == "needs_review" and posts(guardian) == 1
    _, _, (still,) = run(path, acme, policy)
    assert still.status == "needs_review" and posts(guardian) == 1


def test_a_timeout_after_acceptance_is_confirmed_by_read_back_not_resent(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    policy = policy_for(guardian)
    guardian.stall_after_accept(3)
    _, _, (record,) = run(path, acme, policy, client_for(policy, timeout=(5.0, 1.0)))
    assert record.status == "submitted" and posts(guardian) == 1


def test_token_expiry_mid_run_recovers(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL), interval="1d")
    policy = policy_for(guardian)
    client = client_for(policy)
    expired = []

    def expiring_client(block: str) -> GuardianClient:
        if len(guardian.documents()) == 10 and not expired:
            guardian.expire_tokens()  # every token the client holds is now refused
            expired.append(True)
        return client

    with DuckDBWarehouse(path) as wh:
        store = MrvStore(wh)
        extract_and_verify(wh, store, acme, NOW, NOW)
        submit_pending(store, acme, expiring_client, NOW)
        records = store.records("acme")
    assert expired and {r.status for r in records} == {"submitted"}
    assert len(guardian.documents()) == 30
    token_calls = [r for r in guardian.requests if r.path.endswith("/access-token")]
    assert len(token_calls) >= 2  # a fresh token after the expiry


def test_a_500_is_retried_and_a_4xx_fails_with_guardians_message(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL), interval="1d")
    guardian.inject(500, times=1, path="/api/v1/external")
    guardian.inject(422, times=1, path="/api/v1/external", body={"code": 422, "message": "bad VC"})
    _, _, records = run(path, acme, policy_for(guardian))
    statuses = [r.status for r in records]
    assert statuses.count("failed") == 1 and statuses.count("submitted") == 29
    (failed,) = [r for r in records if r.status == "failed"]
    with DuckDBWarehouse(path) as wh:
        history = MrvStore(wh).transitions(failed.record_id)
    assert "Guardian refused it" in history.reason.iloc[-1] and "bad VC" in history.reason.iloc[-1]
    assert len(guardian.documents()) == 29


def test_rejected_records_carry_their_reasons(guardian, tmp_path):
    values = pd.Series(2.0, index=APRIL)
    values.iloc[:100] = float("nan")  # 100 hours missing: 621 of 721 complete, 86.1 %
    values.iloc[200] = 40_000.0  # far above 50 kW x 721 h
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, values.dropna())
    _, sent, (record,) = run(path, acme, policy_for(guardian))
    assert record.status == "rejected" and sent == [] and posts(guardian) == 0
    assert "coverage 86.1% is below 90% (621 of 721 hours complete)" in record.reasons
    assert "exceeds rated 50 kW x 721 h = 36050.000 kWh" in record.reasons


def test_changed_data_makes_a_new_revision_and_never_overwrites_a_submitted_one(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    _, _, (first,) = run(path, acme, policy_for(guardian))
    corrected = pd.Series(2.0, index=APRIL)
    corrected.iloc[0] = 3.0  # the source corrected one hour
    warehouse_with(path, corrected)
    _, _, (latest,) = run(path, acme, policy_for(guardian))
    assert (latest.revision, latest.status) == (2, "rejected")
    assert f"overlaps submitted record {first.record_id} rev 1" in latest.reasons
    assert latest.extraction.energy_kwh == 1443.0
    with DuckDBWarehouse(path) as wh:
        revisions = wh.query(
            "SELECT revision, status, energy_kwh FROM mrv_record ORDER BY revision"
        ).values.tolist()
    assert revisions == [[1, "submitted", 1442.0], [2, "rejected", 1443.0]]
    assert posts(guardian) == 1


def test_an_unreachable_guardian_loses_nothing_and_the_next_run_finishes(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    gone = policy_for(guardian)
    guardian.stop()  # Guardian is down for this run
    offline = GuardianClient(gone, Caller("acme", "main", "guardian"), sleep=lambda s: None)
    _, sent, (record,) = run(path, acme, gone, offline)
    ((after, error),) = sent
    assert record.status == after.status == "submitting" and "ConnectionError" in error
    with DuckDBWarehouse(path) as wh:
        (job,) = job_overview(wh, "acme").to_dict("records")
    assert job["last_task_retries"] == 1
    with GuardianEmulator(users={"meterflow": PASSWORD}, policies={TAG: POLICY_ID}) as back:
        _, _, (record,) = run(path, acme, policy_for(back))
        assert record.status == "submitted" and len(back.documents()) == 1
