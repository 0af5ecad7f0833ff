"""The portal's answers from two warehouses, compared: what `rows_json` would send for every
portal query (sums to 1e-9; `updated_utc` is when each run wrote a record)."""

from __future__ import annotations

import pytest

from meterflow.common.timeutil import HourWindow
from meterflow.portal import queries
from meterflow.portal.app import records
from meterflow.warehouse.backend import Warehouse
from meterflow.warehouse.queries import property_summary


def portal_queries(window: HourWindow) -> dict:
    asks = {
        "properties": queries.properties,
        "meters": queries.meters,
        "carbon": queries.carbon_monthly,
        "eui": queries.eui_monthly,
        "office hours": queries.office_hours_monthly,
        "degree days": queries.degree_days,
        "energy per occupant": queries.energy_per_occupant,
        "quality": queries.meter_quality,
        "gaps": queries.meter_gaps,
        "mrv records": queries.mrv_records,
        "summary": lambda wh, p: property_summary(wh, window, p),
    }
    for granularity in ("hour", "day", "month"):
        for zone in ("local", "utc"):
            ask = queries.MetricQuery("energy", window.start, window.end, granularity, zone)
            asks[f"metrics by {granularity} {zone}"] = lambda wh, p, ask=ask: queries.metrics(
                wh, p, ask
            )
    return asks


def assert_same_answers(
    left_wh: Warehouse, right_wh: Warehouse, participants: list[str], window: HourWindow
) -> set[str]:
    """Every query's answers alike for each participant; the names of those that had rows."""
    answered = set()
    for participant in participants:
        for name, ask in portal_queries(window).items():
            left, right = records(ask(left_wh, participant)), records(ask(right_wh, participant))
            answered |= {name} if left else set()
            assert len(left) == len(right), (participant, name)
            for a, b in zip(left, right, strict=True):
                assert a.keys() == b.keys(), (participant, name)
                for key in a.keys() - {"updated_utc"}:
                    same = a[key] == b[key] or (
                        isinstance(a[key], float) and a[key] == pytest.approx(b[key], rel=1e-9)
                    )
                    assert same, (participant, name, key, a[key], b[key])
    return answered
