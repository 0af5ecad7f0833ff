"""`solcast`: Solcast rooftop site estimated actuals (data type solar) or forecasts.

`period_end` is UTC with 7 fractional digits and `period` an ISO duration such as PT30M;
`pv_estimate` is the average kW over the period, so kWh = kW x period hours. A key has a small
daily call budget shared by every site it serves, counted here across meters and processes; the
429 "daily limit" answer defers the meter until 00:00 UTC instead of failing the dispatch.
Estimated actuals reach back 7 days (168 hours); older hours cannot be fetched.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import ClassVar

import pandas as pd
import requests

from meterflow.collection.rawlog import Payload
from meterflow.collection.sources import CallBudget, SourceAccess
from meterflow.common.errors import SourceDataError
from meterflow.common.http import HttpClient, SourceDeferred
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Meter
from meterflow.standardisation.readings import SourceReadings

MAX_HOURS = {"estimated_actuals": 168, "forecasts": 336}
# A site is fetched at most this often: 168 hours of actuals make hourly calls pointless.
REFRESH = timedelta(hours=3)


def is_daily_limit(response: requests.Response) -> bool:
    return response.status_code == 429 and "daily limit" in response.text.lower()


class SolcastConnector:
    type: ClassVar[str] = "solcast"
    version: ClassVar[str] = "1"
    polls: ClassVar[bool] = True
    settle: ClassVar[timedelta] = timedelta(0)
    # Meter health defaults (a site is fetched every REFRESH): data this far behind is
    # late, this long without new data silent (an alert); a meter's XML may set its own.
    latency: ClassVar[timedelta] = timedelta(hours=6)
    silent_after: ClassVar[timedelta] = timedelta(days=1)

    def __init__(self, client: HttpClient, access: SourceAccess, budget: CallBudget):
        self.client, self.access, self.budget = client, access, budget

    def fetch(
        self,
        storage: Storage,
        meter: Meter,
        window: HourWindow,
        now: datetime,
        seen: dict[str, dict] | None = None,
    ) -> list[Payload]:
        settings = meter.connector
        if _called_since(storage, settings.site, now - REFRESH):
            return []
        limit = self.access.daily_call_limit or 10
        if not self.budget.take(self.access.key_id, limit, now):
            spent = self.budget.spent(self.access.key_id, limit, now)
            raise SourceDeferred(self.client.caller, f"{spent}; next call after 00:00 UTC")
        try:
            response = self.client.get(
                f"{self.access.base_url.rstrip('/')}/rooftop_sites/{settings.site}/{settings.product}",
                params={"hours": MAX_HOURS[settings.product], "format": "json"},
                ok=(200, 204),
                defer_if=is_daily_limit,
            )
        except SourceDeferred:
            self.budget.exhaust(self.access.key_id, now)
            raise
        _record_call(storage, settings.site, now)
        if response.status_code == 204:
            return []
        source = self.client.redact_url(response.url)
        body = response.json()
        return [
            Payload(
                name=f"{settings.product}-{settings.site}-{now:%Y%m%dT%H%M}.json",
                data=json.dumps({"url": source, "body": body}, sort_keys=True).encode(),
                source=source,
            )
        ]

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_periods(data, meter.connector.product)

    # The raw log keeps each period's estimate once: consecutive calls overlap by days.
    def split_records(self, data: bytes) -> tuple[dict, list[dict]]:
        envelope = json.loads(data)
        (product,) = (k for k in MAX_HOURS if k in envelope["body"])
        body = {k: v for k, v in envelope["body"].items() if k != product}
        return {**envelope, "body": body, "product": product}, envelope["body"][product]

    def join_records(self, envelope: dict, records: list[dict]) -> bytes:
        product = envelope["product"]
        rest = {k: v for k, v in envelope.items() if k != "product"}
        body = {**envelope["body"], product: records}
        return json.dumps({**rest, "body": body}, sort_keys=True).encode()

    def record_key(self, record: dict) -> str:
        return f"{record.get('period_end')}/{record.get('period')}"


def _call_key(site: str) -> str:
    return f"state/sources/solcast-{site}.json"


def _called_since(storage: Storage, site: str, moment: datetime) -> bool:
    """Whether the site was asked after `moment` (kept apart from the raw log: an answer with
    nothing new is not archived, but it still counts as a call). A call exactly REFRESH ago
    allows the next one: hourly dispatches call every 3 hours, not every 4."""
    key = _call_key(site)
    if not storage.exists(key):
        return False
    return datetime.fromisoformat(json.loads(storage.read(key))["last_call"]) > moment


def _record_call(storage: Storage, site: str, now: datetime) -> None:
    storage.write(_call_key(site), json.dumps({"last_call": now.isoformat()}).encode())


def parse_periods(data: bytes, product: str) -> SourceReadings:
    """Interval kWh from pv_estimate (average kW) over each period ending at period_end."""
    envelope = json.loads(data)
    items = envelope["body"].get(product)
    if items is None:
        raise SourceDataError(f"response has no {product!r} list")
    rows = []
    for i, item in enumerate(items):
        try:
            end = pd.Timestamp(item["period_end"]).tz_convert("UTC")
            length = pd.Timedelta(item["period"])
            kw = float(item["pv_estimate"])
        except (KeyError, ValueError, TypeError) as exc:
            raise SourceDataError(f"{product}[{i}]: {exc}") from None
        rows.append((end - length, end, kw * length.total_seconds() / 3600, "estimated"))
    frame = pd.DataFrame(rows, columns=["start", "end", "value", "quality"])
    return SourceReadings("interval", "kWh", frame)
