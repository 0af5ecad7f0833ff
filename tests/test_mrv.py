"""MRV against the Guardian emulator on loopback and a real DuckDB warehouse: records, payloads
computed by hand, exactly-once submission across a real crash, token expiry, rejections, read-backs
that cannot be trusted, and records that wait for a person until `meterflow mrv-resolve`."""

from __future__ import annotations

import base64
import json
import multiprocessing
import time
from dataclasses import asdict
from datetime import UTC, datetime

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from blocks import GuardianPolicy
from emulators.guardian import GuardianEmulator
from flows.cli import main
from flows.mrv import mrv
from meterflow.common.http import Caller
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.configuration.participant_xml import load_participant
from meterflow.jobs.store import job_overview
from meterflow.mrv.document import Policy, public_key, verify_signature
from meterflow.mrv.guardian import GuardianClient, Unreadable, parse_documents_page
from meterflow.mrv.run import extract_and_verify, submit_pending
from meterflow.mrv.store import MrvStore, needing_action
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
# Local midnights in Sydney (AEDT, +11) in UTC: a daily job's days that have ended by then are due.
APRIL_2, APRIL_3, APRIL_4 = (datetime(2026, 4, d, 13, tzinfo=UTC) for d in (1, 2, 3))


@pytest.fixture
def guardian():
    with GuardianEmulator(users={"meterflow": PASSWORD}, policies={TAG: POLICY_ID}) as emulator:
        yield emulator


def policy_for(emulator: GuardianEmulator, readback: str | None = "mrv_source") -> Policy:
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
        readback_block=readback,
    )


def client_for(policy: Policy, timeout=(5.0, 20.0), **options) -> GuardianClient:
    return GuardianClient(
        policy, Caller("acme", "main", "guardian", "acme-guardian"), timeout=timeout, **options
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


def run(path, acme, policy: Policy, client: GuardianClient | None = None, until=NOW):
    client = client or client_for(policy)
    with DuckDBWarehouse(path) as wh:
        store = MrvStore(wh)
        touched = extract_and_verify(wh, store, acme, until, NOW)
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
        (job,) = job_overview(wh, "acme", "mrv").to_dict("records")
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
    policy = policy_for(guardian, readback=None)
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
    assert record.status == after.status == "verified" and "ConnectionError" in error
    with DuckDBWarehouse(path) as wh:
        (job,) = job_overview(wh, "acme", "mrv").to_dict("records")
    assert job["last_task_retries"] == 1
    with GuardianEmulator(users={"meterflow": PASSWORD}, policies={TAG: POLICY_ID}) as back:
        _, _, (record,) = run(path, acme, policy_for(back))
        assert record.status == "submitted" and len(back.documents()) == 1


def day(records, start_utc: str):
    """The record of the local day that starts at `start_utc`."""
    (record,) = [r for r in records if f"{r.period.start:%Y-%m-%dT%H:%MZ}" == start_utc]
    return record


def last_reason(path, record) -> str:
    with DuckDBWarehouse(path) as wh:
        return MrvStore(wh).transitions(record.record_id).reason.iloc[-1]


BROKEN_READ_BACKS = {
    "a documents block that lists nothing": ("mrv_reports", None),
    "a block of another type": ("mrv_page", None),
    "a tag Guardian does not know": ("mrv_sourse", None),
    "a block that stopped listing": ("mrv_source", GuardianEmulator.stop_listing),
}


@pytest.mark.parametrize("tag, breaks", BROKEN_READ_BACKS.values(), ids=BROKEN_READ_BACKS)
def test_a_broken_read_back_and_a_dropped_reply_leave_one_document_and_a_record_in_review(
    guardian, tmp_path, tag, breaks
):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL), interval="1d")
    run(path, acme, policy_for(guardian), until=APRIL_3)  # 1 and 2 April, confirmed by mrv_source
    assert len(guardian.documents()) == 2
    if breaks:
        breaks(guardian)
    policy = policy_for(guardian, readback=tag)  # the block configuration changed
    guardian.stall_after_accept(3)  # Guardian stores 3 April; its reply never arrives
    client = client_for(policy, timeout=(5.0, 1.0), sleep=lambda s: None)
    _, _, records = run(path, acme, policy, client, until=APRIL_4)
    third = day(records, "2026-04-02T13:00Z")
    assert third.status == "needs_review"
    assert len(guardian.documents()) == posts(guardian) == 3  # 3 April once
    reason = last_reason(path, third)
    assert "the read-back cannot be trusted" in reason and "not sent again" in reason
    _, _, records = run(path, acme, policy, client_for(policy, sleep=lambda s: None), until=APRIL_4)
    assert day(records, "2026-04-02T13:00Z").status == "needs_review" and posts(guardian) == 3
    with DuckDBWarehouse(path) as wh:
        assert [r.record_id for r, _ in needing_action(wh, "acme")] == [third.record_id]


def test_a_read_back_authorises_a_resend_only_once_it_has_listed_our_documents(guardian, tmp_path):
    """Guardian drops the request before storing it and answers after the client gave up."""
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL), interval="1d")
    policy = policy_for(guardian)
    client = client_for(policy, timeout=(5.0, 1.0))
    guardian.inject(500, path="/api/v1/external", delay=3)
    _, _, (first,) = run(path, acme, policy, client, until=APRIL_2)
    assert first.status == "needs_review" and guardian.documents() == [] and posts(guardian) == 1
    assert "it has never listed one of ours" in last_reason(path, first)
    run(path, acme, policy, client, until=APRIL_3)  # 2 April goes through and is listed
    guardian.inject(500, path="/api/v1/external", delay=3)
    _, _, records = run(path, acme, policy, client, until=APRIL_4)
    third = day(records, "2026-04-02T13:00Z")
    assert third.status == "submitted" and posts(guardian) == 4  # 3 April sent again, once
    ids = [d["id"] for d in guardian.documents()]
    assert ids == [day(records, "2026-04-01T13:00Z").document_id, third.document_id]


def test_the_read_back_reads_every_page_of_guardians_documents_block(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL), interval="1d")
    policy = policy_for(guardian)
    april_11 = datetime(2026, 4, 10, 14, tzinfo=UTC)  # 10 days, 3 documents a page
    _, _, records = run(path, acme, policy, client_for(policy, page_size=3), until=april_11)
    assert [r.status for r in records] == ["submitted"] * 10 and len(guardian.documents()) == 10
    reads = [r.query for r in guardian.requests if r.path.endswith("/tag/mrv_source/blocks")]
    assert [(q["page"], q["itemsPerPage"]) for q in reads[-5:]] == [(str(n), "3") for n in range(5)]


@pytest.mark.parametrize(
    "body",
    [
        None,  # older Guardian answered an unknown tag with no data at all
        [],
        {"uiMetaData": {}, "id": "b1", "blockType": "interfaceContainerBlock", "blocks": []},
        {"data": []},  # no commonAddons: not what a documents block answers
        {"data": [{"id": "65a1", "option": {}}], "commonAddons": []},  # rows without a VC
        {"data": [{"document": {"id": 7}}], "commonAddons": []},
    ],
)
def test_an_answer_not_shaped_like_a_documents_block_is_unreadable_not_empty(body):
    assert isinstance(parse_documents_page(body), Unreadable)


def test_changed_data_waits_until_a_record_in_review_is_resolved(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    policy = policy_for(guardian, readback="mrv_reports")  # lists nothing: delivery unconfirmed
    _, _, (record,) = run(path, acme, policy)
    assert record.status == "needs_review" and posts(guardian) == 1
    corrected = pd.Series(2.0, index=APRIL)
    corrected.iloc[0] = 3.0
    warehouse_with(path, corrected)
    touched, sent, (still,) = run(path, acme, policy)
    assert (touched, sent, still, posts(guardian)) == ([], [], record, 1)


def resolve(path, record, *how: str) -> int:
    return main(["mrv-resolve", "--record", record.record_id, *how, "--warehouse", str(path)])


def test_a_record_guardian_never_got_is_released_and_sent_by_the_next_run(guardian, tmp_path):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    typo = Policy(**{**asdict(policy_for(guardian)), "policy_tag": "Tag_175889281400"})
    _, _, (record,) = run(path, acme, typo)  # Guardian answers true and drops it (#6864)
    assert record.status == "needs_review" and guardian.documents() == []
    why = "no such document in policy Tag_1758892814008 (checked in the Guardian UI)"
    assert resolve(path, record, "--release", "--evidence", why, "--by", "alice") == 0
    _, _, (sent,) = run(path, acme, policy_for(guardian))  # the tag fixed
    assert sent.status == "submitted" and len(guardian.documents()) == 1
    with DuckDBWarehouse(path) as wh:
        history = MrvStore(wh).transitions(record.record_id)
    assert list(history.to_status)[-4:] == ["needs_review", "verified", "submitting", "submitted"]
    assert history.reason.iloc[-3] == f"released for resend by alice: {why}"


def test_marking_a_record_submitted_keeps_who_and_the_evidence_and_a_second_move_is_refused(
    guardian, tmp_path, capsys
):
    path = tmp_path / "wh.duckdb"
    acme = warehouse_with(path, pd.Series(2.0, index=APRIL))
    _, _, (record,) = run(path, acme, policy_for(guardian, readback="mrv_reports"))
    seen = "document listed in the policy's MRV grid, message 1717171717.000000001"
    assert resolve(path, record, "--submitted", "--evidence", seen, "--by", "bob") == 0
    with DuckDBWarehouse(path) as wh:
        store = MrvStore(wh)
        (after,) = store.records("acme")
        assert (after.status, after.confirmation) == ("submitted", f"by bob: {seen}")
        assert store.transitions(record.record_id).reason.iloc[-1] == (
            f"marked submitted by bob; evidence: {seen}"
        )
    capsys.readouterr()
    assert resolve(path, record, "--release", "--evidence", "changed my mind") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: record {record.record_id} rev 1 is submitted")
    assert err.count("\n") == 1
    assert posts(guardian) == 1


def test_every_run_reports_records_waiting_for_a_person_until_one_resolves_them(
    prefect_server, guardian, tmp_path, capsys, monkeypatch
):
    for name, value in (
        ("PREFECT_LOGGING_LEVEL", "WARNING"),
        ("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL"),
    ):
        monkeypatch.setenv(name, value)  # as the CLI sets them, undone after the test
    data = tmp_path / "data"
    config = CONFIG.format(interval="1mo").replace("acme-guardian", "review-guardian")
    LocalStorage(data, "acme").write(CONFIG_KEY, config.encode())
    path = data / "warehouse.duckdb"
    warehouse_with(path, pd.Series(2.0, index=APRIL))
    misconfigured = asdict(policy_for(guardian, readback="mrv_reports"))
    GuardianPolicy(**misconfigured).save("review-guardian", overwrite=True)
    until = NOW.strftime("%Y-%m-%dT%H:%M")
    args = ["--participant", "acme", "--until", until, "--data-root", str(data)]
    args += ["--warehouse", str(path)]

    assert main(["mrv", *args]) == 1
    out, err = capsys.readouterr()
    assert "1 records extracted or submitted in this run" in out
    (line,) = [line for line in err.splitlines() if " needs_review: " in line]
    record_id = line.removeprefix("error: ").split()[0]
    assert main(["mrv", *args]) == 1  # nothing new, and still said
    out, err = capsys.readouterr()
    assert "0 records extracted or submitted in this run" in out
    assert f"{record_id} rev 1 main 2026-03-31T13:00Z needs_review: " in err

    state = mrv("acme", until, str(data), str(path), return_state=True)
    assert state.is_failed() and state.name == "NeedsAction" and record_id in state.message
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    (artifact,) = [a for a in artifacts if a.key == "mrv-acme"]
    table = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    assert [(r["record_id"], r["status"]) for r in table] == [(record_id, "needs_review")]
    assert "1 need action" in artifact.description

    assert main(["jobs", "--warehouse", str(path)]) == 1
    assert f"acme {record_id} rev 1" in capsys.readouterr().out
    evidence = ["--evidence", "listed in the policy's MRV grid"]
    assert (
        main(
            [
                "mrv-resolve",
                "--record",
                record_id,
                "--submitted",
                *evidence,
                "--warehouse",
                str(path),
            ]
        )
        == 0
    )
    assert main(["mrv", *args]) == 0 and main(["jobs", "--warehouse", str(path)]) == 0
    assert posts(guardian) == 1
