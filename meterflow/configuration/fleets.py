"""Synthetic participants for tests and benchmarks: one Sydney property holding energy meters,
as participant XML, so each fleet states only its meters."""

from __future__ import annotations

PARTICIPANT = """<participant id="{pid}" name="{name}">
  <properties>
    <property id="{site}" name="Site" timezone="Australia/Sydney" country="AU" floorArea="{area}">
{meters}
    </property>
  </properties>{alerts}
</participant>"""
CSV_METER = """      <meter id="{id}" dataType="energy">
        <csv path="exports/{id}/" kind="interval" unit="kWh" intervalMinutes="{minutes}"/>
      </meter>"""
WATTWATCHERS_METER = """      <meter id="{id}" dataType="energy" credentials="{block}"
             deviceId="{device}">
        <wattwatchers device="{device}" channels="Mains" quantity="eReal"/>
      </meter>"""


def participant_xml(
    pid: str, meters: list[str], site: str = "site", area: int = 1000, notify: str | None = None
) -> bytes:
    """A participant whose one property holds `meters` (XML elements from the functions below),
    its alerts sent through the notification block `notify` if given."""
    alerts = f'\n  <alerts notify="{notify}"/>' if notify else ""
    xml = PARTICIPANT.format(
        pid=pid,
        name=f"Fleet {pid}",
        site=site,
        area=area,
        meters="\n".join(meters),
        alerts=alerts,
    )
    return xml.encode()


def csv_meter(meter_id: str, interval_minutes: int) -> str:
    """An interval-energy meter (kWh) read from CSV exports under `exports/<meter>/`."""
    return CSV_METER.format(id=meter_id, minutes=interval_minutes)


def wattwatchers_meter(meter_id: str, device: str, block: str) -> str:
    """A Wattwatchers device's mains channel, its key in the credentials block `block`."""
    return WATTWATCHERS_METER.format(id=meter_id, device=device, block=block)
