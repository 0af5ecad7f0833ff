"""Shards: at most `size` meters, and no more hours of window than `size` meters x a week; what
fails in a shard's process reaches the flow whole."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from meterflow.collection.collect import MeterWindow
from meterflow.collection.shards import shard
from meterflow.common.errors import ConfigError, ConfigIssue, MeterflowError, SourceDataError
from meterflow.common.http import Caller, SourceRejected
from meterflow.common.timeutil import HourWindow

START = datetime(2026, 4, 1, tzinfo=UTC)


def planned(meters: int, days: int) -> list[MeterWindow]:
    window = HourWindow(START, START + timedelta(days=days))
    return [MeterWindow(f"m{i:04d}", window, days * 24) for i in range(meters)]


def test_an_hourly_window_fills_shards_by_meter_count():
    assert [len(s) for s in shard(planned(250, 1), 100)] == [100, 100, 50]


def test_a_month_goes_in_shards_of_fewer_meters_so_a_shard_holds_about_a_week_each():
    shards = shard(planned(100, 30), 100)
    assert [len(s) for s in shards] == [23, 23, 23, 23, 8]  # 23 x 720 h <= 100 x 168 h
    assert [mw.meter_id for s in shards for mw in s] == [f"m{i:04d}" for i in range(100)]


def test_a_meter_window_longer_than_the_budget_is_a_shard_of_its_own_never_split():
    long = planned(3, 400)
    assert shard(long, 2) == [[long[0]], [long[1]], [long[2]]]


def test_a_shard_size_below_one_is_refused():
    with pytest.raises(MeterflowError, match="at least 1"):
        shard(planned(1, 1), 0)


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("acme:config/participant.xml", [ConfigIssue(17, "unknown time zone 'X'")]),
        SourceDataError("not a number", participant="acme", meter="m1", file="a.csv", line=3),
        SourceRejected(Caller("acme", "m1", "wattwatchers", "ww-acme"), "401 Unauthorized", 401),
    ],
    ids=type,
)
def test_an_error_raised_in_a_worker_process_reaches_the_flow_whole(error):
    """A participant's configuration error is raised in a worker process and reported by the
    dispatch flow: it must survive the trip (pickle) with its type, fields and message."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)
