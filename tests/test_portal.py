"""The participants' portal over real HTTP on loopback: `meterflow serve`'s app (uvicorn) over the
demo's DuckDB warehouse, people signing in through a local OpenID Connect issuer (RS256 tokens),
machines with API tokens. What one participant's callers get of another's data: nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import requests
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.cloud_identity import CloudIdentityEmulator
from emulators.google_oauth import GoogleOAuthEmulator
from emulators.oidc import OidcIssuer
from flows.demo import demo_sources
from flows.dispatch import dispatch
from meterflow.common import demo_data
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.portal.app import create_app
from meterflow.portal.settings import PortalSettings
from meterflow.portal.tokens import issue_token, participant_of, revoke_token
from meterflow.reporting.schedule import LATEST_KEY, report_link
from meterflow.warehouse import DuckDBWarehouse
from tests.conftest import free_port

WINDOW = HourWindow(datetime(2026, 4, 3, tzinfo=UTC), datetime(2026, 4, 7, tzinfo=UTC))
CLIENT_ID, CLIENT_SECRET = "meterflow-portal", "portal-client-secret"
GROUP = "meterflow-{}@example.org"
PORTAL_ACCOUNT = "meterflow-portal@meterflow-test.iam.gserviceaccount.com"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Portal:
    def __init__(self, url, warehouse, issuer, tokens):
        self.url, self.warehouse, self.issuer, self.tokens = url, warehouse, issuer, tokens

    def get(self, path: str, token: str | None = None, **params) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.url + path, headers=headers, params=params, timeout=30)

    def person(self, email: str, *participants: str) -> requests.Session:
        """A browser session signed in through the issuer as a member of the participants'
        groups."""
        self.issuer.sign_in_as(email, [GROUP.format(p) for p in participants])
        browser = requests.Session()
        landed = browser.get(self.url + "/login", timeout=30)
        assert landed.status_code == 200, landed.text
        assert landed.url.startswith(f"{self.url}/p/{participants[0]}"), landed.url
        return browser


@pytest.fixture(scope="module")
def portal(prefect_server, tmp_path_factory):
    data_root = tmp_path_factory.mktemp("portal") / "data"
    demo_data.generate(data_root, WINDOW)
    warehouse = data_root / "warehouse.duckdb"
    with demo_sources(WINDOW):
        dispatch(
            start=WINDOW.start.isoformat(),
            end=WINDOW.end.isoformat(),
            data_root=str(data_root),
            warehouse=str(warehouse),
            return_state=True,
        )
    now = datetime.now(UTC)
    with DuckDBWarehouse(warehouse) as wh:
        tokens = {p: issue_token(wh, p, "test", now).token for p in ("acme", "globex")}
        revoked = issue_token(wh, "acme", "revoked", now)
        revoke_token(wh, revoked.token_id, now)
        tokens["revoked"] = revoked.token
    with OidcIssuer() as issuer:
        settings = portal_settings(warehouse, data_root, issuer)
        with running(settings) as url:
            yield Portal(url, warehouse, issuer, tokens)


def portal_settings(warehouse, data_root, issuer, **more) -> PortalSettings:
    """The portal's settings with `issuer` as its identity provider, on a port of its own."""
    url = f"http://127.0.0.1:{free_port()}"
    issuer.register_client(CLIENT_ID, CLIENT_SECRET, f"{url}/auth/callback")
    return PortalSettings(
        warehouse=str(warehouse),
        data_root=str(data_root),
        session_secret="test-session-secret-" + "x" * 24,
        public_url=url,
        oidc_issuer=issuer.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        group_pattern=GROUP.format("{participant}"),
        **more,
    )


@contextmanager
def running(settings: PortalSettings) -> Iterator[str]:
    """`meterflow serve`'s app on uvicorn, on the settings' public URL."""
    port = int(settings.public_url.rsplit(":", 1)[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield settings.public_url
    finally:
        server.should_exit = True
        thread.join(10)


def query(portal: Portal, sql: str, params=()) -> pd.DataFrame:
    with duckdb.connect(str(portal.warehouse), read_only=True) as con:
        return con.execute(sql, list(params)).df()


def test_an_api_token_reads_its_participant_and_nothing_else(portal):
    acme = portal.tokens["acme"]
    me = portal.get("/api/v1/me", acme)
    assert me.status_code == 200, me.text
    assert me.json()["participants"] == ["acme"]
    got = portal.get("/api/v1/participants/acme/properties", acme).json()
    expected = query(portal, "SELECT property_id FROM v_property WHERE participant_id='acme'")
    assert [p["property_id"] for p in got] == sorted(expected.property_id)
    meters = portal.get("/api/v1/participants/acme/meters", acme).json()
    assert {m["meter_id"] for m in meters} == set(
        query(portal, "SELECT meter_id FROM v_meter WHERE participant_id='acme'").meter_id
    )
    refused = portal.get("/api/v1/participants/globex/properties", acme)
    assert refused.status_code == 404
    assert refused.json() == {"detail": "no participant 'globex' among yours"}


def test_metrics_by_day_month_and_hour_equal_the_warehouse_in_every_format(portal):
    acme = portal.tokens["acme"]
    window = {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()}
    daily = portal.get(
        "/api/v1/participants/acme/metrics", acme, data_type="energy", property_id="syd-hq",
        granularity="day", zone="local", **window,
    ).json()  # fmt: skip
    truth = query(
        portal,
        """SELECT c.local_date, sum(f.value) AS kwh, count(*) AS hours
           FROM fact_hourly f JOIN dim_calendar c USING (participant_id, property_id, hour_utc)
           WHERE f.participant_id = 'acme' AND f.property_id = 'syd-hq'
             AND f.data_type = 'energy' AND f.hour_utc >= ? AND f.hour_utc < ?
           GROUP BY 1 ORDER BY 1""",
        [WINDOW.start.replace(tzinfo=None), WINDOW.end.replace(tzinfo=None)],
    )
    assert [d["period"] for d in daily] == [d.isoformat() for d in truth.local_date.dt.date]
    assert [d["value"] for d in daily] == pytest.approx(list(truth.kwh), rel=1e-12)
    assert 25 in [d["hours"] for d in daily]  # 5 April in Sydney: daylight saving ends
    monthly = portal.get(
        "/api/v1/participants/acme/metrics", acme, data_type="energy", property_id="syd-hq",
        granularity="month", **window,
    ).json()  # fmt: skip
    assert [m["period"] for m in monthly] == ["2026-04-01"]
    assert monthly[0]["value"] == pytest.approx(truth.kwh.sum(), rel=1e-12)
    hourly = portal.get(
        "/api/v1/participants/acme/metrics", acme, data_type="energy", meter_id="syd-hq-main",
        granularity="hour", limit=10, offset=5, **window,
    ).json()  # fmt: skip
    first = query(
        portal,
        """SELECT hour_utc, value FROM fact_meter_hourly WHERE participant_id = 'acme'
           AND meter_id = 'syd-hq-main' AND hour_utc >= ? ORDER BY hour_utc LIMIT 10 OFFSET 5""",
        [WINDOW.start.replace(tzinfo=None)],
    )
    assert [h["period"] for h in hourly] == [
        t.isoformat() + "Z" for t in first.hour_utc.dt.to_pydatetime()
    ]
    assert [h["value"] for h in hourly] == pytest.approx(list(first.value), rel=1e-12)
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        export = portal.get(
            "/api/v1/participants/acme/metrics", acme, data_type="energy",
            property_id="syd-hq", granularity="day", format=fmt, **window,
        )  # fmt: skip
        assert export.status_code == 200
        assert f'filename="metrics-energy-day.{fmt}"' in export.headers["content-disposition"]
        rows = read(io.BytesIO(export.content))
        assert list(rows.value) == pytest.approx([d["value"] for d in daily], rel=1e-12)


def test_quality_carbon_eui_mrv_and_the_report_are_the_participants_own(portal):
    globex = portal.tokens["globex"]
    quality = portal.get("/api/v1/participants/globex/quality", globex).json()
    held = query(
        portal, "SELECT DISTINCT meter_id FROM fact_meter_hourly WHERE participant_id='globex'"
    )
    assert {m["meter_id"] for m in quality["meters"]} == set(held.meter_id)
    gaps = {}
    for participant in ("acme", "globex"):  # gaps, computed here from the hours held
        hours = query(
            portal,
            "SELECT meter_id, hour_utc FROM fact_meter_hourly WHERE participant_id = ? "
            "AND value IS NOT NULL ORDER BY meter_id, hour_utc",
            [participant],
        )
        previous = hours.groupby("meter_id").hour_utc.shift()
        gap = hours[hours.hour_utc - previous > pd.Timedelta(hours=1)]
        expected = [
            [m, f"{(p + pd.Timedelta(hours=1)).isoformat()}Z", f"{h.isoformat()}Z"]
            for m, p, h in zip(gap.meter_id, previous[gap.index], gap.hour_utc, strict=True)
        ]
        token = portal.tokens[participant]
        found = portal.get(f"/api/v1/participants/{participant}/quality", token).json()["gaps"]
        assert [[g["meter_id"], g["gap_start"], g["gap_end"]] for g in found] == expected
        gaps[participant] = found
    assert any(g["meter_id"] == "syd-hq-main" for g in gaps["acme"])  # the logger outage
    (broken,) = [q for q in quality["quarantined"] if q["name"].endswith("pv-broken.csv")]
    assert "offset" in broken["reason"].lower() or "timezone" in broken["reason"].lower()
    records = portal.get("/api/v1/participants/globex/mrv-records", globex).json()
    assert records and {r["status"] for r in records} <= {
        "submitted", "confirmed", "rejected", "needs_review", "failed", "verified"
    }  # fmt: skip
    assert all(r["document_id"] for r in records if r["status"] == "confirmed")
    carbon = portal.get("/api/v1/participants/globex/carbon", globex).json()
    assert carbon and all(c["t_co2e"] > 0 for c in carbon)
    assert portal.get("/api/v1/participants/globex/eui", globex).json()
    report = portal.get("/api/v1/participants/globex/reports/latest.html", globex)
    assert report.status_code == 200 and "Energy benchmarking" in report.text


def test_people_sign_in_through_the_issuer_and_see_each_group_participant(portal):
    both = portal.person("ann@example.org", "acme", "globex")
    assert both.get(portal.url + "/api/v1/me").json() == {
        "subject": "ann@example.org",
        "participants": ["acme", "globex"],
    }
    for participant in ("acme", "globex"):
        properties = both.get(f"{portal.url}/api/v1/participants/{participant}/properties")
        truth = query(
            portal, "SELECT property_id FROM v_property WHERE participant_id = ?", [participant]
        )
        assert [p["property_id"] for p in properties.json()] == sorted(truth.property_id)
    one = portal.person("bob@example.org", "acme", "initech")  # no such participant: ignored
    assert one.get(portal.url + "/api/v1/me").json()["participants"] == ["acme"]
    assert one.get(portal.url + "/api/v1/participants/globex/meters").status_code == 404
    one.get(portal.url + "/logout")
    assert one.get(portal.url + "/api/v1/me").status_code == 401


def participant_routes(portal) -> list[str]:
    spec = requests.get(portal.url + "/openapi.json", timeout=10).json()
    return [path for path in spec["paths"] if "{participant_id}" in path]


def globex_ids(portal) -> set[str]:
    """Every id of globex's that must never reach an acme caller."""
    found = query(
        portal,
        """SELECT property_id AS id FROM v_property WHERE participant_id = 'globex'
           UNION SELECT meter_id FROM v_meter WHERE participant_id = 'globex'
           UNION SELECT record_id FROM mrv_record WHERE participant_id = 'globex'""",
    )
    return set(found.id)


def test_no_caller_of_acme_gets_any_of_globex_data(portal):
    """Every participant route (from the app's own OpenAPI), every export, asked for globex's
    data by an acme token and an acme person: by path, by ids, by crafted filters and by path
    tricks. Each answer is 401, 404 or 422 with a message, and none holds a globex id."""
    secret = globex_ids(portal)
    acme_token = portal.tokens["acme"]
    person = portal.person("carol@example.org", "acme")
    routes = participant_routes(portal)
    assert len(routes) >= 8
    globex_meter = query(
        portal, "SELECT min(meter_id) m FROM v_meter WHERE participant_id='globex'"
    ).m[0]
    globex_property = query(
        portal, "SELECT min(property_id) p FROM v_property WHERE participant_id='globex'"
    ).p[0]
    window = {
        "start": WINDOW.start.isoformat(),
        "end": WINDOW.end.isoformat(),
        "data_type": "energy",
    }
    asks = []
    for route in routes:
        path = route.replace("{name}", "latest.html")
        for fmt in ("json", "csv", "parquet"):
            asks.append((path.replace("{participant_id}", "globex"), {**window, "format": fmt}))
        acme_path = path.replace("{participant_id}", "acme")
        for crafted in (
            {"property_id": globex_property}, {"meter_id": globex_meter},
            {"property_id": "' OR '1'='1"}, {"meter_id": "x' OR participant_id='globex"},
            {"property_id": "%"}, {"meter_id": "*"}, {"participant_id": "globex"},
            {"data_type": "energy' OR 1=1 --"},
        ):  # fmt: skip
            asks.append((acme_path, {**window, **crafted}))
    for trick in (
        "../../globex/reports/latest.html", "..%2F..%2Fglobex%2Freports%2Flatest.html",
        "%2e%2e/globex/latest.html", "latest.html%00.png", "....//globex/latest.html",
    ):  # fmt: skip
        asks.append((f"/api/v1/participants/acme/reports/{trick}", {}))
    asks.append(("/api/v1/participants/acme/../globex/properties", {}))
    for page in ("", "/meters", "/mrv", f"/property/{globex_property}"):  # dashboard pages
        asks.append((f"/p/globex{page}", {}))
    asks.append((f"/p/acme/property/{globex_property}", {}))
    answers = []
    for path, params in asks:
        asked = " ".join([path, *map(str, params.values())])  # what the caller says may echo
        answers.append((asked, portal.get(path, acme_token, **params)))
        answers.append((asked, person.get(portal.url + path, params=params, timeout=30)))
    for asked, response in answers:
        body = response.content.decode(errors="replace")
        if response.status_code == 200:  # acme's own data, asked with filters that match none
            assert "/participants/acme/" in response.url or "/p/acme" in response.url, response.url
        else:
            assert response.status_code in (401, 403, 404, 422), (response.url, body)
            assert "detail" in response.json() and "Traceback" not in body
        leaked = [s for s in secret if s in body and s not in asked]
        assert leaked == [], (response.url, leaked)


def test_refused_tokens_get_401_with_a_reason(portal):
    issuer = portal.issuer
    issuer.sign_in_as("mallory@example.org", [GROUP.format("globex")])
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    past = int((datetime.now(UTC) - timedelta(hours=2)).timestamp())
    refused = {
        "expired": issuer.mint(CLIENT_ID, exp=past, iat=past - 3600),
        "forged": issuer.mint(CLIENT_ID, key=stranger),
        "forged, unknown key id": issuer.mint(CLIENT_ID, key=stranger, kid="attacker"),
        "wrong audience": issuer.mint("another-app"),
        "wrong issuer": issuer.mint(CLIENT_ID, iss="https://accounts.example.com"),
        "revoked API token": portal.tokens["revoked"],
        "malformed API token": "mft_0000_notatoken",
        "guessed API token": portal.tokens["globex"][:-4] + "AAAA",
        "not a JWT": "hello",
    }
    for why, token in refused.items():
        answer = portal.get("/api/v1/participants/globex/properties", token)
        assert answer.status_code == 401, (why, answer.text)
        assert answer.json()["detail"] and "Traceback" not in answer.text, why
    good = issuer.mint(CLIENT_ID)
    assert portal.get("/api/v1/participants/globex/properties", good).status_code == 200
    assert portal.get("/api/v1/participants/globex/properties").status_code == 401


def test_malformed_parameters_get_422_naming_the_parameter(portal):
    acme = portal.tokens["acme"]
    base = {"data_type": "energy", "start": "2026-04-03T00:00Z", "end": "2026-04-07T00:00Z"}
    for bad in (
        {"granularity": "week"}, {"zone": "mars"}, {"start": "yesterday"},
        {"limit": "100000"}, {"offset": "-1"}, {"format": "xlsx"}, {"property_id": "../x"},
        {"end": "2026-04-01T00:00Z"},
    ):  # fmt: skip
        answer = portal.get("/api/v1/participants/acme/metrics", acme, **{**base, **bad})
        assert answer.status_code == 422, (bad, answer.text)
        named = {location[-1] for error in answer.json()["detail"] for location in [error["loc"]]}
        assert named == set(bad), (bad, answer.json())


@pytest.fixture
def browser():
    """Debian's chromium, headless, through Debian's chromedriver (`make setup` installs both;
    no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1100")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def shown(driver, url: str, screenshots, name: str) -> None:
    """Open a dashboard page, wait until it has drawn everything, and keep a screenshot."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-ready")
    )
    status = driver.find_element("id", "status").text
    assert driver.find_element("tag name", "body").get_attribute("data-ready") == "1", status
    driver.save_screenshot(str(screenshots / f"{name}.png"))


def cells(driver, selector: str) -> list[list[str]]:
    rows = driver.find_elements("css selector", f"{selector} tbody tr")
    return [[td.text for td in row.find_elements("tag name", "td")] for row in rows]


@pytest.mark.browser
def test_a_person_signs_in_in_a_browser_and_each_page_shows_the_warehouse_figures(
    portal, browser, tmp_path
):
    screenshots = Path(os.environ.get("METERFLOW_SCREENSHOTS", tmp_path))
    screenshots.mkdir(parents=True, exist_ok=True)
    portal.issuer.sign_in_as("dana@example.org", [GROUP.format("acme"), GROUP.format("globex")])
    browser.get(portal.url + "/login")  # to the issuer and back, as with Google
    assert browser.current_url.startswith(portal.url + "/p/acme"), browser.current_url
    for participant in ("acme", "globex"):
        summary = portal.get(
            f"/api/v1/participants/{participant}/summary", portal.tokens[participant]
        ).json()
        window = [summary["start"].rstrip("Z"), summary["end"].rstrip("Z")]
        truth = query(
            portal,
            """SELECT f.property_id, round(sum(f.value), 1) AS kwh,
                      round(sum(f.value) / p.floor_area_m2, 2) AS per_m2
               FROM fact_hourly f JOIN v_property p USING (participant_id, property_id)
               WHERE f.participant_id = ? AND f.data_type = 'energy'
                 AND f.hour_utc >= ? AND f.hour_utc < ?
               GROUP BY f.property_id, p.floor_area_m2 ORDER BY 1""",
            [participant, *window],
        )
        shown(browser, f"{portal.url}/p/{participant}", screenshots, f"portfolio-{participant}")
        table = cells(browser, "#properties")
        assert [row[0] for row in table] == list(truth.property_id)
        assert [float(row[1]) for row in table] == list(truth.kwh)
        assert [float(row[2]) for row in table] == list(truth.per_m2)
        assert browser.find_elements("css selector", "#eui-chart .main-svg")
        for property_id, kwh in zip(truth.property_id, truth.kwh, strict=True):
            shown(browser, f"{portal.url}/p/{participant}/property/{property_id}", screenshots,
                  f"property-{participant}-{property_id}")  # fmt: skip
            figures = dict(cells(browser, "#figures"))
            assert float(figures["energy kWh"]) == kwh
            hours = query(
                portal,
                """SELECT count(*) AS n FROM fact_hourly WHERE participant_id = ?
                   AND property_id = ? AND data_type = 'energy' AND hour_utc >= ?
                   AND hour_utc < ?""",
                [participant, property_id, *window],
            ).n[0]
            plotted = browser.execute_script(
                "return document.getElementById('energy-chart').data[0].x.length"
            )
            assert plotted == hours  # every hour drawn, zoomable and hoverable in Plotly
        shown(browser, f"{portal.url}/p/{participant}/meters", screenshots, f"meters-{participant}")
        held = query(
            portal,
            "SELECT meter_id, count(*) AS n FROM fact_meter_hourly WHERE participant_id = ? "
            "GROUP BY 1 ORDER BY 1",
            [participant],
        )
        assert [(row[0], int(row[4])) for row in cells(browser, "#meters")] == list(
            zip(held.meter_id, held.n, strict=True)
        )
        shown(browser, f"{portal.url}/p/{participant}/mrv", screenshots, f"mrv-{participant}")
        records = portal.get(
            f"/api/v1/participants/{participant}/mrv-records", portal.tokens[participant]
        ).json()
        assert [row[5] for row in cells(browser, "#records")] == [r["status"] for r in records]
    browser.get(f"{portal.url}/p/initech")
    assert "among yours" in browser.page_source  # a participant not in the person's groups


def test_meterflow_token_creates_lists_and_revokes_and_stores_only_a_hash(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(warehouse) as wh:
        wh.prepare()
        wh.execute("INSERT INTO dim_participant VALUES ('acme', 'Acme')")
    meterflow = Path(sys.executable).parent / "meterflow"

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [str(meterflow), "token", *args, "--warehouse", str(warehouse)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    created = cli("create", "--participant", "acme", "--label", "BMS export")
    assert created.returncode == 0, created.stderr
    token = created.stdout.split()[-1]
    _, token_id, secret = token.split("_", 2)  # the secret may hold "_" itself
    listed = cli("list").stdout
    assert token_id in listed and "BMS export" in listed and secret not in listed
    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        stored = wh.query("SELECT * FROM api_token").to_csv()
        assert secret not in stored  # the secret itself is nowhere
        assert participant_of(wh, token) == "acme"
    assert cli("revoke", "--id", token_id).returncode == 0
    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        assert participant_of(wh, token) is None
    unknown = cli("create", "--participant", "globex")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "error: no participant 'globex' in the warehouse: load it first"
    )


def test_a_report_link_opens_the_portal_when_there_is_one(tmp_path):
    storage = LocalStorage(tmp_path, "acme")
    storage.write(LATEST_KEY, b"<html>report</html>")
    week = timedelta(days=7)
    assert report_link(storage, "https://portal.example.org/", week) == (
        "https://portal.example.org/api/v1/participants/acme/reports/latest.html"
    )
    assert report_link(storage, None, week) == (tmp_path / "acme" / LATEST_KEY).as_uri()


def test_google_workspace_people_get_their_groups_from_cloud_identity(
    portal, tmp_path, monkeypatch
):
    """Google's ID tokens carry no groups: with groups_from=cloud-identity the portal asks the
    Cloud Identity Groups API (an emulator on loopback) with its own service account, and a
    groups claim in the token counts for nothing."""
    with GoogleOAuthEmulator() as oauth, CloudIdentityEmulator() as directory:
        key = tmp_path / "portal-sa.json"
        key.write_text(json.dumps(oauth.service_account(PORTAL_ACCOUNT, "meterflow-test")))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        directory.add_member("erin@example.org", GROUP.format("globex"))
        directory.add_member("erin@example.org", "all-staff@example.org")
        settings = portal_settings(
            portal.warehouse,
            portal.warehouse.parent,
            portal.issuer,
            groups_from="cloud-identity",
            cloud_identity_url=directory.url,
        )
        with running(settings) as url:
            portal.issuer.sign_in_as("erin@example.org", [GROUP.format("acme")])  # ignored
            browser = requests.Session()
            assert browser.get(url + "/login", timeout=30).url.startswith(url + "/p/globex")
            assert browser.get(url + "/api/v1/me").json()["participants"] == ["globex"]
            assert browser.get(url + "/api/v1/participants/acme/meters").status_code == 404
        assert oauth.grants == [PORTAL_ACCOUNT]  # the directory was asked as the portal
        (asked,) = directory.requests
        assert asked.bearer() and "member_key_id == 'erin@example.org'" in asked.query["query"]


def test_meter_health_and_jobs_are_the_participants_own(portal):
    found = portal.get("/api/v1/participants/acme/health", portal.tokens["acme"]).json()
    held = query(
        portal,
        "SELECT meter_id, state FROM meter_health WHERE participant_id = 'acme' ORDER BY meter_id",
    )
    assert [(r["meter_id"], r["state"]) for r in found] == list(held.itertuples(index=False))
    assert len(found) == 14 and {r["participant_id"] for r in found} == {"acme"}
    jobs = portal.get("/api/v1/participants/acme/jobs", portal.tokens["acme"]).json()
    assert {j["type"] for j in jobs} == {"etl", "mrv"}
    assert {j["participant_id"] for j in jobs} == {"acme"}
    (mrv,) = [j for j in jobs if j["type"] == "mrv"]
    assert mrv["last_task_stage"] == "submission" and mrv["submitted"] > 0
