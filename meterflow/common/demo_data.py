"""Seeded, realistic source files for the example participants (the demo and the tests).

Daily and weekly load shapes, PV bell curves, occupancy in office hours, a counter reset, a gap
of missing rows, a gap between register readings, and the end of daylight saving in Sydney and
Melbourne (5 April 2026). The same seed always writes the same bytes, so rerunning the demo
finds nothing new. `generate` returns the true kWh per energy meter in the window, to check
the warehouse against.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from meterflow.common.storage import CONFIG_KEY, LocalStorage, Storage
from meterflow.common.timeutil import HourWindow

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"
WINDOW = HourWindow(datetime(2026, 3, 30, tzinfo=UTC), datetime(2026, 4, 13, tzinfo=UTC))
SEED = 2026


def generate(data_root: str | Path, window: HourWindow = WINDOW, seed: int = SEED) -> dict:
    """Write both example participants' configuration and source files; return true kWh."""
    rng = np.random.default_rng(seed)
    truth: dict[str, float] = {}
    acme = LocalStorage(data_root, "acme")
    globex = LocalStorage(data_root, "globex")
    for storage in (acme, globex):
        storage.write(CONFIG_KEY, (EXAMPLES / f"{storage.participant_id}.xml").read_bytes())

    truth["syd-hq-main"] = _interval_csv_sydney(acme, rng, window)
    truth["syd-hq-hvac"] = _register_csv(acme, rng, window)
    _temperature_csv(acme, rng, window)
    for meter, peak in (("syd-hq-occ-l1", 120), ("syd-hq-occ-l2", 80)):
        _occupancy_csv(acme, meter, rng, window, "Australia/Sydney", peak, 15)
    truth["syd-hq-pv"] = _pv_push(acme, "syd-hq-pv", rng, window, "Australia/Sydney", 60.0, "json")
    truth.update(_nem12_files(acme, globex, rng, window))
    _fahrenheit_csv(acme, rng, window)
    truth["mel-store-pv"] = _pv_push(
        globex, "mel-store-pv", rng, window, "Australia/Melbourne", 25.0, "csv"
    )
    truth["per-dc-main"] = _interval_csv_perth(globex, rng, window)
    _occupancy_csv(globex, "per-dc-occ", rng, window, "Australia/Perth", 40, 30)
    return truth


def _load_shape(
    times: pd.DatetimeIndex,
    tz: str,
    base: float,
    peak: float,
    rng: np.random.Generator,
    open_hour: float = 8,
    close_hour: float = 18,
    weekdays: int = 5,
) -> np.ndarray:
    """kW at each UTC instant: base load, a smooth office-hours plateau, quieter weekends."""
    local = times.tz_convert(tz)
    hour = np.asarray(local.hour + local.minute / 60, dtype="float64")
    ramp = 1 / (1 + np.exp(-(hour - open_hour) * 2)) - 1 / (1 + np.exp(-(hour - close_hour) * 2))
    working = np.asarray(local.weekday < weekdays, dtype="float64")
    kw = base + peak * ramp * (0.35 + 0.65 * working)
    return kw * rng.normal(1.0, 0.04, len(times)).clip(0.85, 1.15)


def _pv_shape(times: pd.DatetimeIndex, tz: str, kwp: float, rng) -> np.ndarray:
    """kW from a bell curve between about 06:30 and 18:00 local, with a cloudiness per day."""
    local = times.tz_convert(tz)
    hour = np.asarray(local.hour + local.minute / 60, dtype="float64")
    sun = np.clip(np.sin(np.pi * (hour - 6.5) / 11.5), 0, None) ** 1.3
    days = local.normalize()
    clouds = pd.Series(rng.uniform(0.35, 1.0, len(days.unique())), index=days.unique())
    return kwp * 0.8 * sun * clouds.reindex(days).to_numpy()


def _moment(window: HourWindow, fraction: float) -> pd.Timestamp:
    """A whole hour `fraction` of the way through the window (where the demo's incidents go)."""
    return pd.Timestamp(window.start + (window.end - window.start) * fraction).floor("h")


def _write_csv(storage: Storage, key: str, frame: pd.DataFrame) -> None:
    storage.write(key, frame.to_csv(index=False, lineterminator="\n").encode())


def _interval_csv_sydney(storage: Storage, rng, window: HourWindow) -> float:
    """15-minute kWh stamped at interval end in Sydney wall time; 5 hours of rows missing."""
    starts = pd.date_range(window.start, window.end, freq="15min", inclusive="left")
    kwh = (_load_shape(starts, "Australia/Sydney", 40, 160, rng) * 0.25).round(3)
    outage = _moment(window, 0.65)
    keep = ~((starts >= outage) & (starts < outage + pd.Timedelta("5h")))  # a logger outage
    ends = (starts + pd.Timedelta("15min")).tz_convert("Australia/Sydney")
    frame = pd.DataFrame({"Interval End": ends.strftime("%d/%m/%Y %H:%M"), "kWh": kwh})[keep]
    # One export per local week, as a building manager would download them.
    week = ends[keep].strftime("%G-W%V")
    for name, rows in frame.groupby(week):
        _write_csv(storage, f"exports/syd-hq-main/main-{name}.csv", rows)
    return float(kwh[keep].sum())


def _register_csv(storage: Storage, rng, window: HourWindow) -> float:
    """Wh register every 30 minutes in UTC: a reset to zero and three silent hours."""
    times = pd.date_range(window.start, window.end, freq="30min")
    kwh = _load_shape(times[1:], "Australia/Sydney", 8, 45, rng) * 0.5
    register = 73_500_000 + np.concatenate([[0.0], np.cumsum(kwh * 1000)])
    reset = times.get_loc(_moment(window, 0.2))
    register[reset:] -= register[reset - 1]  # the meter restarts from 0 at the prior reading
    register = register.round(0)
    quiet = _moment(window, 0.8)
    silent = (times > quiet) & (times < quiet + pd.Timedelta("3h"))
    frame = pd.DataFrame(
        {"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "register_wh": register.astype(int)}
    )[~silent]
    _write_csv(storage, "exports/syd-hq-hvac/hvac-register.csv", frame)
    return float(np.diff(register[~silent]).clip(0).sum() + register[reset]) / 1000


def _diurnal_temperature(times: pd.DatetimeIndex, tz: str, mean: float, swing: float, rng):
    """degC peaking mid-afternoon local time, with sensor noise."""
    local_hour = times.tz_convert(tz).hour.to_numpy()
    return mean + swing * np.sin(2 * np.pi * (local_hour - 9) / 24) + rng.normal(0, 0.2, len(times))


def _temperature_csv(storage: Storage, rng, window: HourWindow) -> None:
    """10-minute degC samples in Sydney wall time."""
    times = pd.date_range(window.start, window.end, freq="10min")
    temp = _diurnal_temperature(times, "Australia/Sydney", 22.5, 1.5, rng)
    local = times.tz_convert("Australia/Sydney").strftime("%Y-%m-%d %H:%M:%S")
    _write_csv(
        storage,
        "exports/syd-hq-temp/temperature.csv",
        pd.DataFrame({"time": local, "temp_c": temp.round(2)}),
    )


def _fahrenheit_csv(storage: Storage, rng, window: HourWindow) -> None:
    """15-minute degF samples stamped in Unix seconds."""
    times = pd.date_range(window.start, window.end, freq="15min")
    temp_f = _diurnal_temperature(times, "Australia/Brisbane", 23.5, 2.0, rng) * 9 / 5 + 32
    epoch = (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1s")
    _write_csv(
        storage,
        "exports/bne-temp/temperature.csv",
        pd.DataFrame({"time": epoch, "temp_f": temp_f.round(2)}),
    )


def _occupancy_csv(storage, meter, rng, window, tz, peak, minutes) -> None:
    times = pd.date_range(window.start, window.end, freq=f"{minutes}min")
    shape = _load_shape(times, tz, 0, 1, rng)
    people = np.round(peak * shape + rng.poisson(1, len(times)) * (shape > 0.1)).astype(int)
    frame = pd.DataFrame({"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": people})
    if meter == "per-dc-occ":
        frame = frame.rename(columns={"count": "people"})
    _write_csv(storage, f"exports/{meter}/occupancy.csv", frame)


def _pv_push(storage, meter, rng, window, tz, kwp, fmt) -> float:
    """Hourly PV kWh pushed by a vendor: a file per day, and one malformed file."""
    hours = window.hours()
    kwh = _pv_shape(hours + pd.Timedelta("30min"), tz, kwp, rng).round(3)
    frame = pd.DataFrame(
        {"hour_utc": hours.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": kwh, "unit": "kWh"}
    )
    for day, rows in frame.groupby(hours.strftime("%Y-%m-%d")):
        if fmt == "json":
            body = json.dumps({"meter": meter, "readings": rows.to_dict("records")}, indent=1)
            storage.write(f"inbox/{meter}/pv-{day}.json", body.encode())
        else:
            _write_csv(storage, f"inbox/{meter}/pv-{day}.csv", rows)
    # The vendor's bug: local times without an offset. It must be quarantined, not loaded.
    storage.write(
        f"inbox/{meter}/pv-broken.csv",
        b"hour_utc,value,unit\n2026-04-01 10:00,5.0,kWh\n",
    )
    return float(kwh.sum())


def _nem12_files(acme: Storage, globex: Storage, rng, window: HourWindow) -> dict[str, float]:
    """NEM12 days in NEM time (UTC+10) covering the window; returns kWh inside the window."""
    nem_days = pd.date_range(
        (window.start + timedelta(hours=10)).date(), (window.end + timedelta(hours=10)).date()
    )
    registers = {
        ("QB00000001", "E1", 30): ("bne-general", "Australia/Brisbane", 15, 90),
        ("QB00000001", "E2", 30): ("bne-controlled", "Australia/Brisbane", 4, 0),
        ("QB00000002", "E1", 30): (None, "Australia/Brisbane", 10, 30),  # another customer's NMI
        ("VM00000007", "E1", 5): ("mel-store-main", "Australia/Melbourne", 12, 55),
    }
    truth: dict[str, float] = {}
    files = {"acme": ["100,NEM12,202604130300,MDPACME,RETAILER"], "globex": []}
    files["globex"].append("100,NEM12,202604130300,MDPGLBX,RETAILER")
    for (nmi, suffix, minutes), (meter, tz, base, peak) in registers.items():
        per_day = 1440 // minutes
        lines = files["globex" if nmi.startswith("VM") else "acme"]
        total = 0.0
        for day_index, day in enumerate(nem_days):
            starts = pd.date_range(day, periods=per_day, freq=f"{minutes}min", tz="+10:00")
            kwh = (_load_shape(starts, tz, base, peak, rng) * minutes / 60).round(3)
            lines.append(f"200,{nmi},E1E2,{suffix},{suffix},N1,M{nmi[-4:]},KWH,{minutes},")
            values = ",".join(f"{v:.3f}" for v in kwh)
            estimated_day = meter == "bne-general" and day_index == 3
            quality = "V" if estimated_day else "A"
            lines.append(f"300,{day:%Y%m%d},{values},{quality},,,{day:%Y%m%d}235959,")
            if estimated_day:  # a meter fault: intervals 21-26 were estimated by the MDP
                lines += ["400,1,20,A,,", "400,21,26,E52,,", f"400,27,{per_day},A,,"]
            inside = (starts >= window.start) & (starts < window.end)
            total += float(kwh[inside].sum())
        if meter:
            truth[meter] = total
    for lines in files.values():
        lines.append("900")
    acme.write("nem12/NEM12_QB_202604.csv", ("\n".join(files["acme"]) + "\n").encode())
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        info = zipfile.ZipInfo("NEM12#VM00000007#202604.csv", date_time=(2026, 4, 13, 3, 0, 0))
        zipped.writestr(info, "\n".join(files["globex"]) + "\n")
    globex.write("nem12/NEM12_VM_202604.zip", archive.getvalue())
    return truth


def _interval_csv_perth(storage: Storage, rng, window: HourWindow) -> float:
    starts = pd.date_range(window.start, window.end, freq="30min", inclusive="left")
    wh = np.round(_load_shape(starts, "Australia/Perth", 60, 110, rng, 6, 22, 7) * 500).astype(int)
    local = starts.tz_convert("+08:00")
    frame = pd.DataFrame({"start": local.strftime("%Y-%m-%d %H:%M"), "wh": wh})
    # Rows arrive out of order and one is repeated: the repeat must not be counted twice.
    frame = pd.concat([frame.iloc[::-1], frame.iloc[[10]]])
    _write_csv(storage, "exports/per-dc-main/per-dc-main.csv", frame)
    return float(wh.sum()) / 1000
