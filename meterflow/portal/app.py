"""`meterflow serve`: the participants' API (OpenAPI at /docs) and sign-in, over the warehouse.

Every data route is under `/api/v1/participants/{participant_id}/` and answers only a caller
who may see that participant: otherwise 404, the same answer as for a participant that does not
exist, so that no one learns another participant's ids. Errors are JSON with a message, never a
stack trace.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures' annotations,
# which name dependencies local to create_app.
import html
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs

import duckdb
import numpy as np
import orjson
import pandas as pd
import plotly
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from meterflow.common.errors import MeterflowError
from meterflow.common.storage import LocalStorage, Storage
from meterflow.common.timeutil import HourWindow, as_utc, floor_hour
from meterflow.configuration.ids import IDENTIFIER
from meterflow.jobs import health
from meterflow.jobs.store import job_overview
from meterflow.portal import queries, tokens
from meterflow.portal.queries import PAGE_ROWS, Granularity, MetricQuery, NotFound, Zone
from meterflow.portal.settings import PortalSettings
from meterflow.portal.signin import (
    Caller,
    CloudIdentityGroups,
    GroupPattern,
    OidcProvider,
    SignInRefused,
    new_sign_in,
)
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.backend import Warehouse
from meterflow.warehouse.queries import property_summary

log = logging.getLogger("meterflow.portal")
Format = Literal["json", "csv", "parquet"]
Identifier = Annotated[str | None, Query(pattern=f"^{IDENTIFIER.pattern}$")]
REPORT_NAME = re.compile(r"latest\.html|[0-9]{4}-[0-9]{2}-[0-9]{2}\.html")


# Routes that give one table of the participant's: (path, query, what it holds).
TABLES = [
    ("properties", queries.properties, "The participant's properties, as loaded."),
    ("meters", queries.meters, "The participant's meters, as loaded."),
    ("carbon", queries.carbon_monthly, "Scope 2 kg and t CO2-e per property and local month."),
    ("eui", queries.eui_monthly, "kWh/m2 per property and month, and over the last 12 months."),
    (
        "mrv-records",
        queries.mrv_records,
        "Each MRV record's latest revision: status, reasons, Guardian document id.",
    ),
    (
        "office-hours",
        queries.office_hours_monthly,
        "kWh in office hours, out of hours and on holidays, per property and local month.",
    ),
    (
        "degree-days",
        queries.degree_days,
        "Heating and cooling degree days per property and local day.",
    ),
    (
        "energy-per-occupant",
        queries.energy_per_occupant,
        "kWh per mean office-hours occupant, per property and local day.",
    ),
    (
        "health",
        health.current,
        "Each meter's health as of the latest dispatch: ok, late, silent, failing, quarantined "
        "or deferred, since when, its last hour of data and last error.",
    ),
    (
        "jobs",
        job_overview,
        "Each meter job (etl, mrv): its intervals and latest task's stage, status and retries.",
    ),
]
SUMMARY_DAYS = 30  # the dashboard's default span: the last days the warehouse holds
HERE = Path(__file__).parent
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class Unauthenticated(MeterflowError):
    """No caller: no session, no token, or one that is refused."""


class WarehouseBusy(MeterflowError):
    """A DuckDB warehouse is locked by a load; the caller should retry shortly."""


def read_duckdb(path: str) -> Warehouse:
    """A DuckDB file, read-only: a load holds its write lock for seconds, and then the caller
    gets 503 and retries."""
    try:
        return DuckDBWarehouse(path, read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseBusy("the warehouse is being loaded; retry in a few seconds") from None
        raise MeterflowError(f"warehouse {path}: {exc}") from None


def create_app(
    settings: PortalSettings,
    open_warehouse: Callable[[str], Warehouse] = read_duckdb,
    open_storage: Callable[[str, str], Storage] = LocalStorage,
) -> FastAPI:
    """The app over `settings.warehouse` (opened with `open_warehouse`: `meterflow serve` adds
    warehouse blocks) and the participants' storage (`open_storage(data_root, participant)`:
    `meterflow serve` adds storage blocks)."""
    app = FastAPI(
        title="Meterflow participant API",
        version="1",
        description="Each route answers for the caller's own participants only. Sign in at "
        "/login, or send `Authorization: Bearer <API token>`.",
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie="meterflow_session",
        max_age=int(settings.session_hours * 3600),
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    provider = (
        OidcProvider(
            settings.oidc_issuer,
            settings.oidc_client_id or "",
            settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None,
        )
        if settings.oidc_issuer
        else None
    )
    groups = GroupPattern(settings.group_pattern)
    directory = (
        CloudIdentityGroups(settings.cloud_identity_url)
        if settings.groups_from == "cloud-identity"
        else None
    )
    redirect_uri = settings.public_url.rstrip("/") + "/auth/callback"

    @contextmanager
    def warehouse() -> Iterator[Warehouse]:
        with open_warehouse(settings.warehouse) as wh:
            yield wh

    def known_participants(wh: Warehouse) -> set[str]:
        found = wh.query(f"SELECT participant_id FROM {wh.table('dim_participant')}")
        return set(found.participant_id)

    def person(claims: dict) -> Caller:
        with warehouse() as wh:
            known = known_participants(wh)
        if directory is not None:
            if claims.get("email_verified") is False:
                raise SignInRefused("your email address is not verified")
            member_of = directory.groups_of(str(claims.get("email", "")))
        else:
            member_of = claims.get(settings.groups_claim) or []
            member_of = [member_of] if isinstance(member_of, str) else member_of
        return Caller(
            str(claims.get("email") or claims["sub"]), groups.participants(member_of, known)
        )

    def caller(request: Request) -> Caller:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            credential = credential.strip()
            if credential.startswith("mft_"):
                with warehouse() as wh:
                    participant = tokens.participant_of(wh, credential)
                if participant is None:
                    raise Unauthenticated("API token refused (unknown, revoked or malformed)")
                return Caller(f"token:{credential[4:20]}", (participant,))
            if provider is None:
                raise Unauthenticated("this portal accepts API tokens only (no sign-in issuer)")
            try:
                return person(provider.verify(credential))
            except SignInRefused as exc:
                raise Unauthenticated(str(exc)) from None
        signed_in = request.session.get("caller")
        if signed_in and signed_in.get("until", 0) > time.time():
            return Caller(signed_in["subject"], tuple(signed_in["participants"]))
        raise Unauthenticated("sign in at /login, or send Authorization: Bearer <API token>")

    def participant(participant_id: str, who: Annotated[Caller, Depends(caller)]) -> str:
        if participant_id not in who.participants:
            raise NotFound(f"no participant {participant_id!r} among yours")
        return participant_id

    Participant = Annotated[str, Depends(participant)]

    @app.exception_handler(MeterflowError)
    async def refused(request: Request, exc: MeterflowError) -> JSONResponse:
        if isinstance(exc, Unauthenticated | SignInRefused):
            return JSONResponse({"detail": str(exc)}, 401, {"WWW-Authenticate": "Bearer"})
        if isinstance(exc, NotFound):
            return JSONResponse({"detail": str(exc)}, 404)
        if isinstance(exc, WarehouseBusy):
            return JSONResponse({"detail": str(exc)}, 503, {"Retry-After": "5"})
        return JSONResponse({"detail": str(exc)}, 400)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the operators have the details"}, 500)

    # -- sign-in ---------------------------------------------------------------------------

    @app.get("/login", include_in_schema=False)
    def login(request: Request, next: str = "/") -> Response:
        if provider is None:
            return HTMLResponse(TOKEN_FORM)
        state, nonce, verifier = new_sign_in()
        request.session["sign_in"] = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": next if next.startswith("/") and not next.startswith("//") else "/",
        }
        return RedirectResponse(provider.authorize_url(redirect_uri, state, nonce, verifier), 302)

    @app.get("/auth/callback", include_in_schema=False)
    def callback(request: Request, code: str = "", state: str = "") -> Response:
        pending = request.session.pop("sign_in", None)
        if provider is None or not pending or not code or state != pending["state"]:
            raise Unauthenticated("sign-in expired or was not started here; sign in again")
        claims = provider.exchange(code, redirect_uri, pending["verifier"], pending["nonce"])
        sign_in(request, person(claims))
        return RedirectResponse(pending["next"], 302)

    @app.post("/login/token", include_in_schema=False)
    async def login_with_token(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        with warehouse() as wh:
            found = tokens.participant_of(wh, token)
        if found is None:
            raise Unauthenticated("API token refused (unknown, revoked or malformed)")
        sign_in(request, Caller(f"token:{token[4:20]}", (found,)))
        return RedirectResponse("/", 303)

    def sign_in(request: Request, who: Caller) -> None:
        until = time.time() + settings.session_hours * 3600
        request.session["caller"] = {
            "subject": who.subject,
            "participants": list(who.participants),
            "until": until,
        }

    @app.get("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        """Ends the portal session (not the identity provider's: signing in again may not ask
        for a password)."""
        request.session.clear()
        return HTMLResponse(
            "<!doctype html><title>Signed out</title><p>Signed out. "
            "<a href='/login'>Sign in again</a></p>"
        )

    # -- API -------------------------------------------------------------------------------

    @app.get("/api/v1/me")
    def me(who: Annotated[Caller, Depends(caller)]) -> dict:
        """Who you are signed in as, and the participants you may see."""
        return {"subject": who.subject, "participants": list(who.participants)}

    def table(read: Callable[[Warehouse, str], pd.DataFrame], name: str):
        def route(participant_id: Participant, format: Format = "json") -> Response:
            with warehouse() as wh:
                return answer(read(wh, participant_id), format, name)

        return route

    for name, read, what in TABLES:
        app.get(f"/api/v1/participants/{{participant_id}}/{name}", description=what)(
            table(read, name)
        )

    @app.get("/api/v1/participants/{participant_id}/summary")
    def summary(
        participant_id: Participant,
        start: datetime | None = None,
        end: datetime | None = None,
        format: Format = "json",
    ) -> Response:
        """Per property over [start, end) (default: the last 30 days the warehouse holds):
        hours, kWh, kWh per m2, solar, mean outside temperature, energy coverage."""
        with warehouse() as wh:
            window = summary_window(wh, participant_id, start, end)
            rows = property_summary(wh, window, participant_id)
        if format != "json":
            return answer(rows, format, "summary")
        return JSONResponse(
            {"start": _iso(window.start), "end": _iso(window.end), "properties": records(rows)}
        )

    @app.get("/api/v1/participants/{participant_id}/metrics")
    def metrics(
        participant_id: Participant,
        data_type: Annotated[str, Query(pattern=r"^[a-z_]{1,32}$")],
        start: datetime,
        end: datetime,
        granularity: Granularity = "day",
        zone: Zone = "local",
        property_id: Identifier = None,
        meter_id: Identifier = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_ROWS)] = PAGE_ROWS,
        offset: Annotated[int, Query(ge=0)] = 0,
        format: Format = "json",
    ) -> Response:
        """Values of one data type by hour, day or month (days local or UTC), per property or
        for one property or meter, with hours held, mean coverage and estimated hours. At most
        `limit` rows: the next page starts at `offset + limit`."""
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            raise end_before_start()
        q = MetricQuery(
            data_type, start, end, granularity, zone, property_id, meter_id, limit, offset
        )
        with warehouse() as wh:
            rows = queries.metrics(wh, participant_id, q)
        return answer(rows, format, f"metrics-{data_type}-{granularity}")

    @app.get("/api/v1/participants/{participant_id}/quality")
    def quality(participant_id: Participant, format: Format = "json") -> Response:
        """Per meter: hours held, missing and estimated, coverage; the gaps between hours
        held (the first 1,000); and quarantined files with the reason each was refused."""
        with warehouse() as wh:
            rows = queries.meter_quality(wh, participant_id)
            gaps = queries.meter_gaps(wh, participant_id)
        if format != "json":
            return answer(rows, format, "quality")
        return JSONResponse(
            {
                "meters": records(rows),
                "gaps": records(gaps),
                "quarantined": quarantined(storage_of(participant_id)),
            }
        )

    @app.get("/api/v1/participants/{participant_id}/reports/{name}", response_class=HTMLResponse)
    def report(participant_id: Participant, name: str) -> Response:
        """A benchmarking report from the participant's storage: `latest.html` or
        `<last day>.html`."""
        if not REPORT_NAME.fullmatch(name):
            raise NotFound(f"no report {name!r}")
        storage = storage_of(participant_id)
        key = f"reports/{name}"
        if not storage.exists(key):
            raise NotFound(f"no report {name!r} for participant {participant_id}")
        return HTMLResponse(storage.read(key))

    def storage_of(participant_id: str) -> Storage:
        return open_storage(settings.data_root, participant_id)

    # -- dashboard -------------------------------------------------------------------------

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    pages = Jinja2Templates(directory=HERE / "templates")

    def page(
        request: Request,
        participant_id: str,
        template: str,
        title: str,
        check: Callable[[], None] | None = None,
        **extra,
    ) -> Response:
        """A dashboard page of one of the caller's participants (`check`: more that must
        hold once the caller is known, e.g. that the property is the participant's)."""
        try:
            who = caller(request)
        except Unauthenticated:
            return RedirectResponse(f"/login?next={request.url.path}", 303)
        if participant_id not in who.participants:
            raise NotFound(f"no participant {participant_id!r} among yours")
        if check is not None:
            check()
        context = {
            "participant": participant_id,
            "participants": who.participants,
            "subject": who.subject,
            "title": title,
            **extra,
        }
        return pages.TemplateResponse(request, template, context)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        try:
            who = caller(request)
        except Unauthenticated:
            return RedirectResponse("/login", 303)
        if not who.participants:
            return HTMLResponse(
                f"<!doctype html><title>Meterflow</title><p>{_html(who.subject)}: your groups "
                "give you no participant. Ask your administrator. <a href='/logout'>Sign out</a>"
            )
        return RedirectResponse(f"/p/{who.participants[0]}", 303)

    @app.get("/p/{participant_id}", include_in_schema=False)
    def portfolio_page(request: Request, participant_id: str) -> Response:
        return page(request, participant_id, "portfolio.html", "Portfolio")

    @app.get("/p/{participant_id}/property/{property_id}", include_in_schema=False)
    def property_page(request: Request, participant_id: str, property_id: str) -> Response:
        def owned() -> None:
            with warehouse() as wh:
                queries.check_owned(
                    wh, participant_id, "v_property", "property_id", property_id, "property"
                )

        return page(
            request, participant_id, "property.html", property_id, owned, property_id=property_id
        )

    @app.get("/p/{participant_id}/meters", include_in_schema=False)
    def meters_page(request: Request, participant_id: str) -> Response:
        return page(request, participant_id, "meters.html", "Meter health")

    @app.get("/p/{participant_id}/mrv", include_in_schema=False)
    def mrv_page(request: Request, participant_id: str) -> Response:
        return page(request, participant_id, "mrv.html", "MRV records")

    return app


def answer(rows: pd.DataFrame, format: str, name: str) -> Response:
    """Rows as JSON, or as a CSV or Parquet download named after what they are."""
    if format == "json":
        return Response(rows_json(rows), 200, media_type="application/json")
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
    if format == "csv":
        return Response(rows.to_csv(index=False), 200, disposition, "text/csv; charset=utf-8")
    out = io.BytesIO()
    rows.to_parquet(out, index=False)
    return Response(out.getvalue(), 200, disposition, "application/vnd.apache.parquet")


def rows_json(rows: pd.DataFrame) -> bytes:
    """A JSON array of the rows: times ISO 8601 UTC with a Z, dates yyyy-mm-dd, missing values
    null. Built column at a time: a year of hours (8,760 rows) in a few milliseconds."""
    columns = [_json_values(rows[column]) for column in rows.columns]
    names = list(rows.columns)
    return orjson.dumps(
        [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    )


def _json_values(values: pd.Series) -> list:
    missing = values.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.dt.tz is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        text = np.datetime_as_string(values.to_numpy(dtype="datetime64[s]"), unit="s")
        found = [f"{t}Z" for t in text]
    elif values.dtype == object:
        found = [v.isoformat() if isinstance(v, date) else v for v in values.tolist()]
    else:
        found = values.tolist()
    return (
        [None if gone else v for v, gone in zip(found, missing, strict=True)]
        if missing.any()
        else found
    )


def records(rows: pd.DataFrame) -> list[dict]:
    """The rows as JSON-ready dicts, as `rows_json` writes them."""
    return orjson.loads(rows_json(rows))


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z; a naive time is UTC (as the warehouse stores it)."""
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat().replace("+00:00", "Z")


def quarantined(storage: Storage) -> list[dict]:
    """The reason files of refused input: what was refused, from where, and why."""
    found = []
    for key in storage.list("quarantine/"):
        if key.endswith(".reason.json"):
            reason = json.loads(storage.read(key))
            found.append({"key": key.removesuffix(".reason.json"), **reason})
    return found


def summary_window(
    wh: Warehouse, participant_id: str, start: datetime | None, end: datetime | None
) -> HourWindow:
    """The hours asked for, or the last SUMMARY_DAYS days the warehouse holds."""
    if start is not None and end is not None:
        window = HourWindow(floor_hour(as_utc(start)), floor_hour(as_utc(end)))
        if window.end <= window.start:
            raise end_before_start()
        return window
    span = queries.data_span(wh, participant_id)
    if span is None:
        raise NotFound(f"no hours loaded for participant {participant_id} yet")
    first, after = span
    return HourWindow(max(first, after - timedelta(days=SUMMARY_DAYS)), after)


def end_before_start() -> RequestValidationError:
    """422 naming `end`, as FastAPI names any other malformed parameter."""
    problem = {"type": "value_error", "loc": ["query", "end"], "msg": "end must be after start"}
    return RequestValidationError([problem])


def _html(text: str) -> str:
    return html.escape(text)


TOKEN_FORM = """<!doctype html><title>Sign in: Meterflow</title>
<h1>Sign in</h1><p>This portal has no identity provider configured: sign in with an API token
(<code>meterflow token create --participant ID</code>).</p>
<form method="post" action="/login/token"><input name="token" type="password" size="70"
 autocomplete="off" placeholder="mft_..."> <button>Sign in</button></form>"""
