"""Where a participant's reports live in its storage, and when the latest is rendered again.

`reports/<last day>.html` is each rendering, kept; `reports/latest.html` is the newest, at a
stable key that links and the portal can point to; `reports/latest.json` says when it was
rendered and which days it covers. Reports are documents of days: an hourly dispatch renders
each at most once a day.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from urllib.parse import quote

from pydantic import BaseModel

from meterflow.common.storage import Storage

REPORT_EVERY_HOURS = 24.0
LATEST_KEY = "reports/latest.html"
MANIFEST_KEY = "reports/latest.json"


class ReportManifest(BaseModel):
    """What `reports/latest.html` holds: rendered when, over which local days, kept where."""

    rendered_at: datetime
    first_day: date
    last_day: date
    dated_key: str


def dated_key(last_day: date) -> str:
    return f"reports/{last_day.isoformat()}.html"


def read_manifest(storage: Storage) -> ReportManifest | None:
    if not storage.exists(MANIFEST_KEY):
        return None
    return ReportManifest.model_validate(json.loads(storage.read(MANIFEST_KEY)))


def latest_report_due(storage: Storage, now: datetime, every: timedelta) -> bool:
    """Whether the participant's latest report is missing or at least `every` old. Rendering
    it on every hourly dispatch would cost more than the collection it reports on (half a
    second per participant)."""
    manifest = read_manifest(storage)
    return manifest is None or now - manifest.rendered_at >= every


def store_report(
    storage: Storage, html: str, first_day: date, last_day: date, now: datetime
) -> ReportManifest:
    """Keep the rendering under its last day, make it the latest, then record that (the
    manifest last: a reader that finds it finds both copies)."""
    manifest = ReportManifest(
        rendered_at=now, first_day=first_day, last_day=last_day, dated_key=dated_key(last_day)
    )
    data = html.encode("utf-8")
    storage.write(manifest.dated_key, data)
    storage.write(LATEST_KEY, data)
    storage.write(MANIFEST_KEY, manifest.model_dump_json().encode())
    return manifest


def report_link(storage: Storage, portal_url: str | None, expires: timedelta) -> str:
    """Where people open the latest report: the portal's page for it when there is a portal
    (behind their sign-in, never expiring), else a link to the object itself (signed on a
    bucket, valid `expires`; the file in a local folder)."""
    if portal_url:
        participant = quote(storage.participant_id)
        return f"{portal_url.rstrip('/')}/api/v1/participants/{participant}/{LATEST_KEY}"
    return storage.share(LATEST_KEY, expires)
