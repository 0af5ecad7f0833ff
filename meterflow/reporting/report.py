"""The benchmarking report: one self-contained HTML page an energy manager can forward.

Every chart is inline SVG drawn from the warehouse views, with the numbers behind it in a table
underneath, so the page works offline, prints, and can be checked line by line.
"""

from __future__ import annotations

import html
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from meterflow.common.storage import Storage
from meterflow.common.timeutil import HOUR, HourWindow
from meterflow.reporting.schedule import ReportManifest, store_report
from meterflow.warehouse.backend import Warehouse
from meterflow.warehouse.views import TRUNCATE, USE_PERIOD_SUMS

PALETTE = ["#1f6f8b", "#e07a5f", "#81b29a", "#f2cc8f", "#3d405b", "#9c6644"]
STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2433;
background:#f5f6f8}
header{background:#1f6f8b;color:#fff;padding:28px 48px}
header h1{margin:0 0 4px;font-size:26px}header p{margin:0;opacity:.85}
main{max-width:1100px;margin:0 auto;padding:24px 48px 48px}
.kpis{display:grid;grid-template-columns:repeat(5,1fr);gap:14px;margin:-44px 0 24px}
.kpi{background:#fff;border-radius:10px;padding:16px 18px;box-shadow:0 1px 4px #0002}
.kpi b{display:block;font-size:24px;margin-top:4px}.kpi span{font-size:12px;color:#5b6577;
text-transform:uppercase;letter-spacing:.04em}
section{background:#fff;border-radius:10px;padding:20px 24px;margin:0 0 20px;
box-shadow:0 1px 4px #0001}
section h2{font-size:18px;margin:0 0 4px}section p.why{margin:0 0 10px;color:#5b6577;
font-size:14px}
table{border-collapse:collapse;font-size:13px;margin-top:8px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e6e8ec;text-align:right}
th:first-child,td:first-child{text-align:left}th{color:#5b6577;font-weight:600}
details summary{cursor:pointer;color:#1f6f8b;font-size:13px;margin-top:6px}
footer{color:#5b6577;font-size:12px;text-align:center;padding:12px}
svg{max-width:100%;height:auto}
"""


def build_report(wh: Warehouse, participant_id: str, start: date, end: date) -> str:
    """HTML for [start, end) in the properties' local dates."""
    data = _Data(wh, participant_id, start, end)
    step = resolution(start, end)
    sections = [
        _section(
            f"Energy per property, per {step}",
            f"kWh per local {step}; dips flag closures or gaps.",
            _daily_chart(data.periods(step), step),
            data.periods(step)
            .pivot(index="period", columns="property_id", values="kwh")
            .round(1)
            .reset_index(),
        ),
        _section(
            "Energy use intensity ranking",
            "kWh per m2 of floor area over the period; "
            "the figure to benchmark buildings of different sizes.",
            _eui_chart(data.eui),
            data.eui,
        ),
        _section(
            "Office hours vs out of hours",
            "Share of energy used inside office hours, "
            "outside them and on public holidays. Large out-of-hours shares point at "
            "plant left running.",
            _share_chart(data.shares[data.shares.office_hours == "configured"], data.unconfigured),
            data.shares,
        ),
        _section(
            "Carbon per month",
            "Scope 2 emissions, t CO2-e, reported both ways (GHG Protocol dual reporting). "
            "Location-based: each hour's energy times the grid's measured intensity that hour "
            "where a grid-intensity source has it, else the factor of the country or region. "
            "Market-based: energy covered by the supply contract's instruments (green power, "
            "certificates, PPAs) at their rates, the rest at the supplier's rate or the "
            "residual mix.",
            _carbon_chart(data.carbon, data.without_factor),
            data.carbon,
        ),
        _section(
            "Temperature difference vs consumption",
            "Daily mean inside-minus-outside "
            "temperature against daily kWh: a slope means heating or cooling drives use.",
            _delta_chart(data.delta),
            data.delta,
        ),
        _section(
            "Data completeness",
            f"Share of each property's hours with energy data, per {step}. "
            "Decisions on thin data deserve a second look.",
            _completeness_chart(data.completeness, step),
            data.completeness_table(),
        ),
    ]
    title = f"Energy benchmarking: {html.escape(data.name)}"
    period = f"{start:%d %b %Y} to {end:%d %b %Y} (local dates, end exclusive)"
    count = f"{len(data.eui)} {'property' if len(data.eui) == 1 else 'properties'}"
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}</style></head><body><header><h1>{title}</h1><p>{period} · "
        f"{count}</p></header><main>{data.kpis()}{''.join(sections)}"
        "</main><footer>Generated by Meterflow from the analytics warehouse. Carbon is scope 2, "
        "location- and market-based (docs/warehouse.md); hours flagged estimated are included."
        "</footer>"
        "</body></html>"
    )


def write_report(wh: Warehouse, participant_id: str, start: date, end: date, out: Path) -> Path:
    """Write the report to `out` (folders created) and return the path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(wh, participant_id, start, end), encoding="utf-8")
    return out


class _Data:
    """Everything the report shows, fetched once from the views."""

    def __init__(self, wh: Warehouse, participant_id: str, start: date, end: date):
        t = wh.table
        args = [participant_id, start, end]
        where = "participant_id = ? AND local_date >= ? AND local_date < ?"
        self.name = wh.query(
            f"SELECT name FROM {t('dim_participant')} WHERE participant_id = ?", [participant_id]
        ).name.iloc[0]
        self.daily = wh.query(
            f"SELECT property_id, local_date, kwh FROM {t('v_eui_daily')} WHERE {where} "
            "ORDER BY property_id, local_date",
            args,
        )
        self.eui = wh.query(
            f"""SELECT d.property_id AS property, sum(d.kwh) AS kwh, max(p.floor_area_m2) AS m2,
                       sum(d.kwh) / max(p.floor_area_m2) AS kwh_per_m2
                FROM {t("v_eui_daily")} d JOIN {t("v_property")} p
                  ON p.participant_id = d.participant_id AND p.property_id = d.property_id
                WHERE d.{where.replace(" AND ", " AND d.")}
                GROUP BY d.property_id ORDER BY kwh_per_m2 DESC""",
            args,
        ).round(3)
        places = wh.query(
            f"SELECT property_id, country, region, office_days FROM {t('v_property')} "
            "WHERE participant_id = ? ORDER BY property_id",
            [participant_id],
        )
        configured = set(places.property_id[places.office_days.notna()])
        self.unconfigured = sorted(set(places.property_id) - configured)
        self.shares = wh.query(
            f"""SELECT property_id AS property,
                       {USE_PERIOD_SUMS}, sum(kwh) AS kwh
                FROM {t("v_energy_hourly")} WHERE {where}
                GROUP BY property_id ORDER BY property_id""",
            args,
        ).round(1)
        # Without office hours every hour would count as out of hours: say so instead.
        self.shares["office_hours"] = [
            "configured" if p in configured else "not configured" for p in self.shares.property
        ]
        self.carbon = wh.query(
            f"""SELECT property_id AS property, {_month(wh)} AS month, sum(kwh) AS kwh,
                       sum(t_co2e) AS t_co2e, sum(market_t_co2e) AS market_t_co2e,
                       sum(CASE WHEN location_basis = 'hourly intensity' THEN kwh ELSE 0 END)
                           AS kwh_hourly_intensity,
                       sum(CASE WHEN market_basis = 'grid average (no residual mix)'
                                THEN kwh - covered_kwh ELSE 0 END) AS kwh_market_grid_average,
                       sum(CASE WHEN location_basis IS NULL THEN kwh ELSE 0 END)
                           AS kwh_without_factor
                FROM {t("v_carbon_hourly")} WHERE {where}
                GROUP BY property_id, {_month(wh)} ORDER BY month, property""",
            args,
        ).round(
            {
                "kwh": 1,
                "t_co2e": 3,
                "market_t_co2e": 3,
                "kwh_hourly_intensity": 1,
                "kwh_market_grid_average": 1,
                "kwh_without_factor": 1,
            }
        )
        # Energy with no factor has no carbon (NULL), never zero: named by where it is.
        missing = set(self.carbon.property[self.carbon.kwh_without_factor > 0])
        self.without_factor = sorted(
            {_place(r.country, r.region) for r in places.itertuples() if r.property_id in missing}
        )
        self.delta = wh.query(
            f"""SELECT d.property_id AS property, c.local_date, avg(d.delta_c) AS delta_c,
                       max(e.kwh) AS kwh
                FROM {t("v_temperature_delta")} d
                JOIN {t("dim_calendar")} c ON c.participant_id = d.participant_id
                 AND c.property_id = d.property_id AND c.hour_utc = d.hour_utc
                JOIN {t("v_eui_daily")} e ON e.participant_id = d.participant_id
                 AND e.property_id = d.property_id AND e.local_date = c.local_date
                WHERE c.{where.replace(" AND ", " AND c.")}
                GROUP BY d.property_id, c.local_date ORDER BY property, local_date""",
            args,
        ).round({"delta_c": 2, "kwh": 1})
        self.completeness = wh.query(
            f"""SELECT c.property_id, c.local_date, avg(COALESCE(f.coverage, 0)) AS completeness
                FROM {t("dim_calendar")} c LEFT JOIN {t("fact_hourly")} f
                  ON f.participant_id = c.participant_id AND f.property_id = c.property_id
                 AND f.hour_utc = c.hour_utc AND f.data_type = 'energy'
                WHERE c.{where.replace(" AND ", " AND c.")}
                GROUP BY c.property_id, c.local_date ORDER BY c.property_id, c.local_date""",
            args,
        )

    def periods(self, step: str) -> pd.DataFrame:
        """kWh per property and local day, week (from Monday) or month (`period`)."""
        days = pd.to_datetime(self.daily.local_date)
        start = {"day": days, "week": days.dt.to_period("W").dt.start_time}.get(
            step, days.dt.to_period("M").dt.start_time
        )
        by = [self.daily.property_id, start.rename("period")]
        return self.daily.groupby(by).kwh.sum(min_count=1).reset_index()

    def completeness_table(self) -> pd.DataFrame:
        table = self.completeness.pivot(
            index="property_id", columns="local_date", values="completeness"
        )
        summary = pd.DataFrame(
            {
                "property": table.index,
                "mean": table.mean(axis=1).round(3),
                "worst day": table.min(axis=1).round(3),
            }
        )
        return summary.reset_index(drop=True)

    def kpis(self) -> str:
        kwh = self.eui.kwh.sum()
        area = self.eui.m2.sum()
        shares = self.shares[self.shares.office_hours == "configured"]
        out = shares.out_of_hours_kwh.sum() + shares.holiday_kwh.sum()
        no_factor = f"no factor for {', '.join(self.without_factor)}"

        def tonnes(column: str) -> str:
            carbon = self.carbon[column].sum(min_count=1)
            if pd.isna(carbon):
                return no_factor
            return f"{carbon:,.1f} t CO2-e" + (f" (and {no_factor})" if self.without_factor else "")

        cards = [
            ("Energy", f"{kwh:,.0f} kWh"),
            ("Carbon, location-based", tonnes("t_co2e")),
            ("Carbon, market-based", tonnes("market_t_co2e")),
            ("Intensity", f"{kwh / area:,.2f} kWh/m2" if area else "no floor area"),
            (
                "Out of hours",
                f"{out / shares.kwh.sum():.0%}" if shares.kwh.sum() else "not configured",
            ),
            ("Completeness", f"{self.completeness.completeness.mean():.1%}"),
        ]
        if self.eui.empty:  # a participant with solar or weather meters only: nothing to divide
            cards = [(name, "no energy data") for name, _ in cards]
        return (
            "<div class='kpis'>"
            + "".join(f"<div class='kpi'><span>{k}</span><b>{v}</b></div>" for k, v in cards)
            + "</div>"
        )


def _place(country: str, region: str | None) -> str:
    return f"{country}-{region}" if isinstance(region, str) and region else country


def _month(wh: Warehouse) -> str:
    return TRUNCATE[wh.dialect]("month", "local_date")


def _section(title: str, why: str, chart: str, numbers: pd.DataFrame) -> str:
    table = numbers.to_html(index=False, border=0, float_format=lambda v: f"{v:,.3f}")
    return (
        f"<section><h2>{title}</h2><p class='why'>{why}</p>{chart}"
        f"<details><summary>The numbers behind this chart</summary>{table}</details></section>"
    )


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float = 10, height: float = 3.6):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e6e8ec")
    ax.set_axisbelow(True)
    return fig, ax


def _why(text: str) -> str:
    """A sentence saying what a chart cannot show, or nothing."""
    return f"<p class='why'>{text}</p>" if text else ""


NO_ENERGY = _why("No energy data in this window.")


def resolution(start: date, end: date) -> str:
    """The step a window's charts are drawn at: days up to two months, weeks up to two years,
    months beyond, so that a chart holds at most about a hundred points."""
    days = (end - start).days
    return "day" if days <= 62 else "week" if days <= 731 else "month"


def _daily_chart(periods: pd.DataFrame, step: str) -> str:
    if periods.empty:
        return NO_ENERGY
    fig, ax = _figure()
    for i, (prop, rows) in enumerate(periods.groupby("property_id")):
        ax.plot(
            rows.period,
            rows.kwh,
            marker="o" if len(rows) <= 62 else None,
            ms=3,
            label=prop,
            color=PALETTE[i % len(PALETTE)],
        )
    ax.set_ylabel(f"kWh per {step}")
    ax.legend(frameon=False, ncol=4)
    fig.autofmt_xdate()
    return _svg(fig)


def _eui_chart(eui: pd.DataFrame) -> str:
    fig, ax = _figure(height=0.5 + 0.5 * len(eui))
    ordered = eui.sort_values("kwh_per_m2")
    ax.barh(ordered.property, ordered.kwh_per_m2, color=PALETTE[0])
    for y, value in enumerate(ordered.kwh_per_m2):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=9)
    ax.set_xlabel("kWh per m2 over the period")
    ax.grid(axis="x", color="#e6e8ec")
    return _svg(fig)


def _share_chart(shares: pd.DataFrame, unconfigured: list[str]) -> str:
    none = _why(
        f"Office hours not configured for {', '.join(unconfigured)}: their energy is not split "
        "(set &lt;officeHours&gt; in the participant XML)."
        if unconfigured
        else ""
    )
    if shares.empty:
        return none or NO_ENERGY
    fig, ax = _figure(height=0.6 + 0.5 * len(shares))
    left = pd.Series(0.0, index=shares.index)
    for i, (column, label) in enumerate(
        [
            ("office_kwh", "office hours"),
            ("out_of_hours_kwh", "out of hours"),
            ("holiday_kwh", "public holidays"),
            ("closed_kwh", "closed"),
        ]
    ):
        share = shares[column] / shares.kwh
        ax.barh(shares.property, share, left=left, label=label, color=PALETTE[i])
        left += share
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(frameon=False, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1))
    return _svg(fig) + none


def _carbon_chart(carbon: pd.DataFrame, without_factor: list[str]) -> str:
    """Location- and market-based t CO2-e side by side per month, all properties together."""
    none = _why(
        f"No emission factor for {', '.join(without_factor)}: energy there has no carbon "
        "figure (not zero)."
        if without_factor
        else ""
    )
    months = carbon.groupby("month")[["t_co2e", "market_t_co2e"]].sum(min_count=1)
    months = months.dropna(how="all")
    if months.empty:
        return none or NO_ENERGY
    fig, ax = _figure()
    labels = [pd.Timestamp(m).strftime("%b %Y") for m in months.index]
    x = np.arange(len(labels))
    for i, (column, label) in enumerate(
        (("t_co2e", "location-based"), ("market_t_co2e", "market-based"))
    ):
        ax.bar(x + (i - 0.5) * 0.4, months[column], 0.4, label=label, color=PALETTE[i])
    ax.set_xticks(x, labels)
    ax.set_ylabel("t CO2-e")
    ax.set_ylim(bottom=0)
    ax.tick_params(axis="x", labelrotation=90 if len(labels) > 6 else 0)
    ax.legend(frameon=False, ncol=2)
    hourly = carbon.kwh_hourly_intensity.sum() / carbon.kwh.sum() if carbon.kwh.sum() else 0
    measured = _why(
        f"{hourly:.0%} of the energy has a measured hourly grid intensity; the rest uses the "
        "annual factor."
        if hourly
        else ""
    )
    fallback = sorted(set(carbon.property[carbon.kwh_market_grid_average > 0]))
    grid_average = _why(
        f"No residual mix is published for {', '.join(fallback)}: in the market-based figure, "
        "energy no contract covers counts at the grid average."
        if fallback
        else ""
    )
    return _svg(fig) + measured + grid_average + none


def _delta_chart(delta: pd.DataFrame) -> str:
    if delta.empty:
        return _why("No property has both inside and outside temperature yet.")
    fig, ax = _figure(height=4)
    for i, (prop, rows) in enumerate(delta.groupby("property")):
        ax.scatter(rows.delta_c, rows.kwh, label=prop, color=PALETTE[i % len(PALETTE)], s=28)
    ax.set_xlabel("daily mean inside minus outside, degC")
    ax.set_ylabel("kWh per day")
    ax.legend(frameon=False)
    return _svg(fig)


def _completeness_chart(completeness: pd.DataFrame, step: str) -> str:
    if completeness.empty:
        return _why("No hours in this window.")
    days = pd.to_datetime(completeness.local_date)
    period = days if step == "day" else days.dt.to_period(step[0].upper()).dt.start_time
    by = [completeness.property_id, period.rename("period")]
    means = completeness.groupby(by).completeness.mean().reset_index()
    table = means.pivot(index="property_id", columns="period", values="completeness")
    fig, ax = plt.subplots(figsize=(10, 0.7 + 0.45 * len(table)))
    image = ax.imshow(table.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1)
    ax.set_yticks(range(len(table)), table.index)
    every = -(-len(table.columns) // 40)  # at most 40 labels
    shown = range(0, len(table.columns), every)
    label = "%b %Y" if step == "month" else "%d %b %Y" if len(table.columns) > 62 else "%d %b"
    ax.set_xticks(
        list(shown),
        [pd.Timestamp(table.columns[i]).strftime(label) for i in shown],
        rotation=90,
        fontsize=8,
    )
    fig.colorbar(image, ax=ax, fraction=0.025, format=matplotlib.ticker.PercentFormatter(1.0))
    return _svg(fig)


def write_latest_report(
    wh: Warehouse, storage: Storage, window: HourWindow, now: datetime
) -> ReportManifest:
    """Render the report for the dates the window touches into the participant's storage."""
    first, last = window.start.date(), (window.end - HOUR).date()
    html = build_report(wh, storage.participant_id, first, last + timedelta(days=1))
    return store_report(storage, html, first, last, now)
