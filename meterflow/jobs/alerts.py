"""Alert incidents: one per problem while it lasts, with one message when it opens and one when it
resolves, however many dispatches see it in between.

A condition is a problem a dispatch found: a meter silent or failing, a participant's
configuration that does not validate, MRV records waiting for a person. An incident opens when a
condition has no open incident of its kind and subject, and resolves when a dispatch that looked
(its `scope`) no longer finds it. Incidents live in the warehouse (`alert_incident`), with when
each message was sent: a message that could not be sent is sent by the next dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from meterflow.common.timeutil import warehouse_time
from meterflow.warehouse.backend import Warehouse
from meterflow.warehouse.schema import TABLES

COLUMNS = TABLES["alert_incident"].column_names
METER_KINDS = {"silent": "meter_silent", "failing": "meter_failing"}


@dataclass(frozen=True)
class Condition:
    participant_id: str
    kind: str  # meter_silent, meter_failing, config_invalid, mrv_review
    subject: str  # the meter, or "configuration", or "mrv"
    since: pd.Timestamp  # naive UTC
    property_id: str | None = None
    last_error: str | None = None


def meter_conditions(health: pd.DataFrame) -> list[Condition]:
    """A condition per meter that is silent or failing."""
    return [
        Condition(
            r.participant_id,
            METER_KINDS[r.state],
            r.meter_id,
            pd.Timestamp(r.since_utc),
            r.property_id,
            r.last_error,
        )
        for r in health.itertuples(index=False)
        if r.state in METER_KINDS
    ]


def reconcile(
    wh: Warehouse,
    conditions: list[Condition],
    scope: set[tuple[str, str]],
    notify_of: dict[str, str | None],
    as_of: datetime,
) -> pd.DataFrame:
    """Open an incident per new condition and resolve the open incidents of the `scope`
    (participant, kind) that no condition holds any more; the incidents written."""
    now = pd.Timestamp(warehouse_time(as_of))
    participants = sorted({participant for participant, _ in scope})
    open_ = open_incidents(wh, participants)
    held = {(c.participant_id, c.kind, c.subject): c for c in conditions}
    changed = []
    for row in open_.to_dict("records"):
        key = (row["participant_id"], row["kind"], row["subject"])
        if key in held:
            error = held.pop(key).last_error
            if error and error != row["last_error"]:
                changed.append({**row, "last_error": error})
        elif key[:2] in scope:
            changed.append({**row, "resolved_utc": now})
    for (participant_id, kind, subject), c in held.items():
        changed.append(
            {
                "incident_id": f"{participant_id}/{kind}/{subject}/{now:%Y-%m-%dT%H:%MZ}",
                "participant_id": participant_id,
                "kind": kind,
                "subject": subject,
                "property_id": c.property_id,
                "since_utc": c.since,
                "opened_utc": now,
                "resolved_utc": None,
                "last_error": c.last_error,
                "notify": notify_of.get(participant_id),
                "opened_sent_utc": None,
                "resolved_sent_utc": None,
            }
        )
    written = pd.DataFrame(changed, columns=COLUMNS)
    if not written.empty:
        wh.upsert("alert_incident", written)
    return written


def open_incidents(wh: Warehouse, participant_ids: list[str]) -> pd.DataFrame:
    if not participant_ids:
        return pd.DataFrame(columns=COLUMNS)
    rows = wh.query(
        f"SELECT * FROM {wh.table('alert_incident')} WHERE resolved_utc IS NULL "
        f"AND participant_id IN ({', '.join('?' for _ in participant_ids)})",
        participant_ids,
    )
    return rows.astype(object).where(rows.notna(), None)


def unsent(wh: Warehouse) -> pd.DataFrame:
    """Incidents whose message is due: opened and not told, or resolved after being told."""
    rows = wh.query(
        f"SELECT * FROM {wh.table('alert_incident')} WHERE notify IS NOT NULL AND ("
        "(opened_sent_utc IS NULL AND resolved_utc IS NULL) OR "
        "(opened_sent_utc IS NOT NULL AND resolved_utc IS NOT NULL AND resolved_sent_utc IS NULL))"
        " ORDER BY opened_utc, incident_id"
    )
    return rows.astype(object).where(rows.notna(), None)


def mark_sent(wh: Warehouse, incident: dict, at: datetime) -> None:
    """Record that the incident's due message went out."""
    column = "opened_sent_utc" if incident["resolved_utc"] is None else "resolved_sent_utc"
    sent = {**incident, column: pd.Timestamp(warehouse_time(at))}
    wh.upsert("alert_incident", pd.DataFrame([sent], columns=COLUMNS))


def message(incident: dict) -> tuple[str, str]:
    """Subject and body of the incident's due message: opened, or resolved."""
    who, kind, subject = incident["participant_id"], incident["kind"], incident["subject"]
    since = f"{pd.Timestamp(incident['since_utc']):%Y-%m-%d %H:%M} UTC"
    where = f" (property {incident['property_id']})" if incident["property_id"] else ""
    title = f"{who}: {kind.replace('_', ' ')}" + (f" {subject}" if kind.startswith("meter") else "")
    if incident["resolved_utc"] is None:
        what = {
            "meter_silent": f"meter {subject}{where} is silent: no new data since {since}",
            "meter_failing": f"meter {subject}{where} is failing: its collections fail since "
            f"{since}",
            "config_invalid": f"its configuration does not validate (since {since})",
            "mrv_review": f"MRV records wait for a person (since {since}): meterflow jobs",
        }[kind]
        error = f"\nLast error: {incident['last_error']}" if incident["last_error"] else ""
        return f"[meterflow] {title}", f"{who}: {what}.{error}"
    resolved = f"{pd.Timestamp(incident['resolved_utc']):%Y-%m-%d %H:%M} UTC"
    what = {
        "meter_silent": f"meter {subject}{where} has data again (silent since {since})",
        "meter_failing": f"meter {subject}{where} collects again (failing since {since})",
        "config_invalid": f"its configuration validates again (invalid since {since})",
        "mrv_review": f"no MRV record waits for a person any more (since {since})",
    }[kind]
    return f"[meterflow] resolved: {title}", f"{who}: resolved at {resolved}: {what}."


def replayed(participant_id: str, property_of: dict[str, str], found: pd.DataFrame) -> list[dict]:
    """The incidents hourly dispatches would have opened (and resolved) for the silences that
    meterflow.jobs.health.silences found: what a backfilled period's alerts would have been."""
    opened = "{}/meter_silent/{}/{:%Y-%m-%dT%H:%MZ}"
    return [
        {
            "incident_id": opened.format(participant_id, s.meter_id, s.alerted),
            "participant_id": participant_id,
            "kind": "meter_silent",
            "subject": s.meter_id,
            "property_id": property_of.get(s.meter_id),
            "since_utc": s.since,
            "opened_utc": s.alerted,
            "resolved_utc": None if pd.isna(s.resolved) else s.resolved,
            "last_error": None,
            "notify": None,
            "opened_sent_utc": None,
            "resolved_sent_utc": None,
        }
        for s in found.itertuples(index=False)
    ]
