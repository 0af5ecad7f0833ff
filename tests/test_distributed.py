"""Beyond one machine, with real processes: `prefect server start` on PostgreSQL, a `process` pool,
every local deployment, two `prefect worker` processes and `dispatch` fanning collection out as
`collect-shard` deployment runs over a Wattwatchers fleet served by the emulator.

Worker A also serves the `dispatcher` queue, so the dispatch run always lands on A and worker B
can be lost without losing the dispatcher. Losing B mid-run: every process of B is SIGKILLed;
its unfinished shard runs are marked Crashed, as Prefect's zombie-flow automation (or an
operator) does; the dispatch ends Failed naming them; the rerun collects only the meters whose
hours never reached storage.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import duckdb
import psycopg
import pytest
import requests
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.states import Crashed
from sqlalchemy.engine import URL

from blocks import WattwatchersCredentials
from emulators.wattwatchers import WattwatchersEmulator
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.configuration.fleets import participant_xml, wattwatchers_meter
from tests.processes import (
    Process,
    prefect_cli,
    prefect_server,
    start_worker,
    submitted_runs,
    talking_to,
)

pytestmark = [pytest.mark.server, pytest.mark.distributed, pytest.mark.timeout(900)]

KEY = "key_" + "d157" * 8
DEVICES = [f"D{n:012d}" for n in range(1, 9)]
DAY_1 = ("2026-04-01T00:00+00:00", "2026-04-02T00:00+00:00")
DAY_2 = ("2026-04-02T00:00+00:00", "2026-04-03T00:00+00:00")


@pytest.fixture
def prefect_on_postgres(tmp_path, postgres):
    """A Prefect server on its own new database of the PostgreSQL server, dropped at the end."""
    database = f"meterflow_prefect_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**postgres, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{database}"')
    url = URL.create(
        "postgresql+asyncpg",
        username=postgres["user"],
        password=postgres.get("password"),
        host=postgres["host"],
        port=int(postgres["port"]),
        database=database,
    ).render_as_string(hide_password=False)
    try:
        with prefect_server(tmp_path / "prefect", url) as api:
            yield api
    finally:
        with psycopg.connect(**postgres, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def cluster(prefect_on_postgres, tmp_path):
    """Deployments, the fleet's data root and block, and two workers; all stopped at the end."""
    url, env = prefect_on_postgres
    prefect_cli(env, "work-pool", "create", "--type", "process", "meterflow-process")
    prefect_cli(env, "work-queue", "create", "dispatcher", "--pool", "meterflow-process")
    prefect_cli(env, "--no-prompt", "deploy", "-n", "*/local")
    data_root = tmp_path / "data"
    meters = [wattwatchers_meter(f"ww-{n}", d, "fleet-ww") for n, d in enumerate(DEVICES, 1)]
    LocalStorage(data_root, "fleet").write(CONFIG_KEY, participant_xml("fleet", meters))
    first = int(datetime(2026, 3, 31, tzinfo=UTC).timestamp())
    workers: dict[str, Process] = {}
    with WattwatchersEmulator({KEY: DEVICES}, first_ts=first) as emulator:
        with talking_to(url):
            WattwatchersCredentials(api_key=KEY, base_url=emulator.url).save("fleet-ww")
        queues = ("--work-queue", "default", "--limit", "2")
        workers["A"] = start_worker(
            env, "worker-a", tmp_path / "a.log", *queues, "--work-queue", "dispatcher"
        )
        workers["B"] = start_worker(env, "worker-b", tmp_path / "b.log", *queues)
        try:
            yield url, data_root, emulator, workers
        finally:
            for worker in workers.values():
                worker.stop()


def dispatch_run(url: str, data_root, day: tuple[str, str], timeout: float) -> FlowRun:
    """`dispatch/local` on worker A (the `dispatcher` queue), its shards `collect-shard/local`
    runs of one meter each; waits `timeout` seconds for it to end (0: not at all)."""
    parameters = {
        "start": day[0],
        "end": day[1],
        "data_root": str(data_root),
        "warehouse": str(data_root / "warehouse.duckdb"),
        "mode": "deployments",
        "shard_size": 1,
    }
    with talking_to(url):
        return run_deployment(
            "dispatch/local",
            parameters=parameters,
            work_queue_name="dispatcher",
            timeout=timeout,
            poll_interval=1,
        )


def run_state(url: str, run_id: str) -> dict:
    return requests.get(f"{url}/flow_runs/{run_id}", timeout=10).json()["state"]


def kill_worker_b_while_it_runs_a_shard(url: str, workers: dict[str, Process]) -> set[str]:
    """SIGKILL worker B and its flow runs as soon as it has one under way; the ids of its runs
    left unfinished."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        mine = submitted_runs(("worker-b", workers["B"]))
        if any(run_state(url, r)["type"] in {"PENDING", "RUNNING"} for r in mine):
            workers["B"].kill()
            break
        time.sleep(0.2)
    else:
        pytest.fail("worker B never started a shard:\n" + workers["B"].text()[-3000:])
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    mine = submitted_runs(("worker-b", workers["B"]))
    return {r for r in mine if run_state(url, r)["type"] not in final}


def wait_final(url: str, run_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (state := run_state(url, run_id))["type"] not in {"COMPLETED", "FAILED", "CRASHED"}:
        if time.monotonic() > deadline:
            pytest.fail(f"flow run {run_id} still {state['name']} after {timeout} s")
        time.sleep(1)
    return state


def shard_runs(url: str, dispatch: FlowRun) -> list[dict]:
    """The dispatch run's `collect-shard` child runs, by name."""
    found = requests.post(
        f"{url}/flow_runs/filter",
        json={"flow_runs": {"parent_flow_run_id": {"any_": [str(dispatch.id)]}}},
        timeout=10,
    ).json()
    return sorted((r for r in found if r["name"].startswith("collect-shard/")), key=by_meter)


def meter_of(run: dict) -> str:
    """Shard runs of one meter each are named `collect-shard/fleet/shard-K-of-N (ww-K..ww-K)`."""
    return run["name"].rsplit("(", 1)[1].split("..")[0]


def by_meter(run: dict) -> int:
    return int(meter_of(run).removeprefix("ww-"))


def warehouse_hours(data_root, day: tuple[str, str]) -> dict[str, tuple[int, int]]:
    """Per meter: rows, and distinct hours, in fact_meter_hourly for the day."""
    with duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT meter_id, count(*), count(DISTINCT hour_utc) FROM fact_meter_hourly "
            "WHERE hour_utc >= ?::TIMESTAMPTZ AND hour_utc < ?::TIMESTAMPTZ GROUP BY 1",
            list(day),
        ).fetchall()
    return {meter: (n, distinct) for meter, n, distinct in rows}


def print_table(title: str, runs: list[dict], ran_on: dict[str, str]) -> None:
    print(f"\n{title}")
    print(f"| {'shard run':<50} | {'worker':<8} | {'state':<9} |")
    print(f"|{'-' * 52}|{'-' * 10}|{'-' * 11}|")
    for run in runs:
        worker = ran_on.get(run["id"], "-")
        print(f"| {run['name']:<50} | {worker:<8} | {run['state_name']:<9} |")


def test_two_workers_share_the_shards_and_a_rerun_after_losing_one_redoes_only_its_shards(
    cluster, capsys
):
    url, data_root, emulator, workers = cluster
    all_meters = {f"ww-{n}" for n in range(1, len(DEVICES) + 1)}
    started = time.monotonic()

    # 1. Both workers up: eight shards, each on whichever worker has a free slot.
    emulator.inject(200, delay=1.5, times=len(DEVICES), path="/long-energy/")
    first = dispatch_run(url, data_root, DAY_1, timeout=300)
    assert first.state.is_completed(), workers["A"].text()[-3000:]
    runs = shard_runs(url, first)
    ran_on = submitted_runs(("worker-a", workers["A"]), ("worker-b", workers["B"]))
    with capsys.disabled():
        print_table(f"day 1, both workers ({time.monotonic() - started:.0f} s)", runs, ran_on)
    assert len(runs) == len(DEVICES) and all(r["state_type"] == "COMPLETED" for r in runs)
    assert ran_on[str(first.id)] == "worker-a"
    assert {ran_on[r["id"]] for r in runs} == {"worker-a", "worker-b"}
    assert warehouse_hours(data_root, DAY_1) == dict.fromkeys(all_meters, (24, 24))

    # 2. Worker B is lost while it runs shards of day 2.
    emulator.inject(200, delay=4, times=len(DEVICES), path="/long-energy/")
    second = dispatch_run(url, data_root, DAY_2, timeout=0)
    lost = kill_worker_b_while_it_runs_a_shard(url, workers)
    with talking_to(url), get_client(sync_client=True) as client:
        for run_id in lost:  # what the zombie-flow automation, or an operator, does
            client.set_flow_run_state(run_id, Crashed(message="worker-b lost"))
    state = wait_final(url, str(second.id))
    runs = shard_runs(url, second)
    ran_on = submitted_runs(("worker-a", workers["A"]), ("worker-b", workers["B"]))
    with capsys.disabled():
        print_table("day 2, worker-b killed mid-run", runs, ran_on)
    crashed = {meter_of(r) for r in runs if r["state_type"] == "CRASHED"}
    assert state["type"] == "FAILED"
    for run in runs:  # a lost run whose last state change was already on its way may complete
        named = f"shard run {run['name']} ended Crashed" in state["message"]
        assert run["id"] in lost if named else run["state_type"] != "CRASHED", run["name"]
    assert crashed and crashed < all_meters
    # Whatever reached storage is loaded, also from a shard killed after writing its hours.
    stored = warehouse_hours(data_root, DAY_2)
    assert set(stored) >= all_meters - crashed
    assert set(stored.values()) == {(24, 24)}
    missing = all_meters - set(stored)
    assert missing and missing <= crashed

    # 3. The rerun collects the lost shards' meters only, and the day is complete.
    rerun = dispatch_run(url, data_root, DAY_2, timeout=300)
    assert rerun.state.is_completed(), workers["A"].text()[-3000:]
    redone = shard_runs(url, rerun)
    with capsys.disabled():
        ran_on = submitted_runs(("worker-a", workers["A"]))
        print_table("day 2 rerun, worker-a alone", redone, ran_on)
        print(f"distributed test: {time.monotonic() - started:.0f} s from first dispatch")
    assert {meter_of(r) for r in redone} == missing
    assert all(r["state_type"] == "COMPLETED" for r in redone)
    assert warehouse_hours(data_root, DAY_2) == dict.fromkeys(all_meters, (24, 24))
    assert warehouse_hours(data_root, DAY_1) == dict.fromkeys(all_meters, (24, 24))
