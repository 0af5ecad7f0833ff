"""Portal latency and throughput: the metrics route over one property-year of hourly data in five
data types, on DuckDB, through `meterflow serve` in its own process.

    .venv/bin/python -m bench.portal [--requests 200] [--clients 50]

Prints the latency of one client asking, in turn, for each data type's year by hour (8,760 rows
each), by local day and by month (p50, p95, max), then the same requests from 50 concurrent
clients: requests/s, p95 and errors. Target: p95 <= 150 ms with one client, 0 errors.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from bench.fleet import print_table
from meterflow.portal.tokens import issue_token
from meterflow.warehouse import DuckDBWarehouse
from tests.conftest import free_port

YEAR = pd.date_range("2025-01-01", "2026-01-01", freq="h", inclusive="left")
DATA_TYPES = {
    "energy": "kWh",
    "solar": "kWh",
    "temperature": "degC",
    "outdoor_temperature": "degC",
    "occupancy": "persons",
}
TZ = "Australia/Sydney"


def property_year(path: Path) -> str:
    """A warehouse holding one property's year of hourly values in five data types (and its
    calendar); an API token for its participant."""
    local = YEAR.tz_localize("UTC").tz_convert(TZ)
    weekday = local.day_of_week < 5
    rng = np.random.default_rng(7)
    with DuckDBWarehouse(path) as wh:
        wh.prepare()
        wh.execute("INSERT INTO dim_participant VALUES ('bench', 'Bench Pty Ltd')")
        wh.upsert(
            "dim_property",
            pd.DataFrame(
                [
                    {
                        "participant_id": "bench",
                        "property_id": "tower",
                        "valid_from": datetime(2025, 1, 1),
                        "valid_to": None,
                        "name": "Tower",
                        "timezone": TZ,
                        "country": "AU",
                        "region": "NSW",
                        "floor_area_m2": 12000.0,
                        "office_days": "Mon Tue Wed Thu Fri",
                        "office_start": "08:00",
                        "office_end": "18:00",
                        "degree_day_base_c": 18.0,
                    }
                ]
            ),
        )
        wh.upsert(
            "dim_calendar",
            pd.DataFrame(
                {
                    "participant_id": "bench",
                    "property_id": "tower",
                    "hour_utc": YEAR,
                    "local_date": local.date,
                    "local_hour": local.hour,
                    "weekday": local.day_of_week,
                    "is_weekend": ~weekday,
                    "is_holiday": False,
                    "holiday_name": None,
                    "is_office_hours": weekday & (local.hour >= 8) & (local.hour < 18),
                }
            ),
        )
        for data_type, unit in DATA_TYPES.items():
            wh.upsert(
                "fact_hourly",
                pd.DataFrame(
                    {
                        "participant_id": "bench",
                        "property_id": "tower",
                        "data_type": data_type,
                        "hour_utc": YEAR,
                        "value": rng.uniform(0, 100, len(YEAR)),
                        "unit": unit,
                        "quality": "measured",
                        "coverage": 1.0,
                        "meters_reporting": 1,
                        "meters_expected": 1,
                    }
                ),
            )
        return issue_token(wh, "bench", "bench", datetime.now(UTC)).token


def asks() -> list[dict]:
    year = {"start": "2025-01-01T00:00Z", "end": "2026-01-01T00:00Z", "property_id": "tower"}
    return [
        {**year, "data_type": data_type, "granularity": granularity}
        for granularity in ("hour", "day", "month")
        for data_type in DATA_TYPES
    ]


def timed_get(session: requests.Session, url: str, params: dict) -> tuple[float, int, int]:
    started = time.perf_counter()
    answer = session.get(url, params=params, timeout=60)
    return time.perf_counter() - started, answer.status_code, len(answer.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150, help="per run (one client)")
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-portal-"))
    warehouse = work / "warehouse.duckdb"
    token = property_year(warehouse)
    port = free_port()
    env = {
        **os.environ,
        "METERFLOW_PORTAL_WAREHOUSE": str(warehouse),
        "METERFLOW_PORTAL_SESSION_SECRET": secrets.token_urlsafe(32),
        "PREFECT_API_URL": "",
    }
    meterflow = Path(sys.executable).parent / "meterflow"
    server = subprocess.Popen(
        [str(meterflow), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/v1/participants/bench/metrics"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(200):
            try:
                requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        session = requests.Session()
        session.headers.update(headers)
        plan = asks()
        one = [timed_get(session, url, plan[i % len(plan)]) for i in range(args.requests)]

        def client(i: int) -> list[tuple[float, int, int]]:
            mine = requests.Session()
            mine.headers.update(headers)
            return [timed_get(mine, url, plan[(i + k) % len(plan)]) for k in range(len(plan))]

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            many = [r for found in pool.map(client, range(args.clients)) for r in found]
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for name, results, seconds in (
        ("1 client", one, sum(r[0] for r in one)),
        (f"{args.clients} clients", many, wall),
    ):
        latency = np.array([r[0] for r in results]) * 1000
        errors = sum(r[1] != 200 for r in results)
        rows.append(
            [
                name,
                len(results),
                f"{len(results) / seconds:.1f}",
                f"{np.percentile(latency, 50):.0f}",
                f"{np.percentile(latency, 95):.0f}",
                f"{latency.max():.0f}",
                errors,
            ]
        )
    print_table(
        "portal: /metrics over one property-year, five data types, by hour/day/month (DuckDB)",
        ["clients", "requests", "requests/s", "p50 ms", "p95 ms", "max ms", "errors"],
        rows,
    )
    hourly = [r for r, ask in zip(one, [plan[i % len(plan)] for i in range(len(one))], strict=True)
              if ask["granularity"] == "hour"]  # fmt: skip
    print(
        f"\nby hour alone (8,760 rows, {np.mean([r[2] for r in hourly]) / 1e6:.1f} MB of JSON): "
        f"p95 {np.percentile([r[0] * 1000 for r in hourly], 95):.0f} ms  (target: p95 <= 150 ms "
        "with one client, 0 errors)"
    )


if __name__ == "__main__":
    main()
