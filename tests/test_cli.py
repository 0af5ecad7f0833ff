"""The `meterflow` command as a user runs it: real processes on real files, each on a fresh
Prefect home. A user error is one line naming the file (and line); a run shows its progress, the
meters table and one line per failure, with Prefect's own log off unless `--verbose`."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meterflow.common import demo_data
from meterflow.common.timeutil import HourWindow

METERFLOW = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "meterflow"
DAY = HourWindow(datetime(2026, 4, 3, tzinfo=UTC), datetime(2026, 4, 4, tzinfo=UTC))


def meterflow(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the command as a user would: no Prefect settings of ours, a Prefect home never used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(cwd / "prefect-home")
    return subprocess.run(
        [str(METERFLOW), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def one_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The single `error:` line a failed command printed, and nothing else."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def nem12(nmi: str = "NEM1201009") -> str:
    values = ",".join(["1.5"] * 48)
    return (
        "100,NEM12,200506081149,UNITEDDP,NEMMCO\n"
        f"200,{nmi},E1E2,1,E1,N1,01009,KWH,30,20050610\n"
        f"300,20050301,{values},A,,,20050310121004,20050310182204\n"
        "900\n"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["export.csv", "--kind", "interval", "--unit", "kwhh"], "unknown unit 'kwhh'"),
        (["missing.csv", "--kind", "interval", "--unit", "kWh"], "missing.csv: No such file"),
        (["folder", "--kind", "interval", "--unit", "kWh"], "folder: Is a directory"),
        (["export.csv", "--meter-xml", "none.xml"], "none.xml: No such file"),
    ],
)
def test_unknown_unit_missing_file_and_folder_are_one_line_errors(tmp_path, args, expected):
    write(tmp_path / "export.csv", "timestamp,value\n2026-01-01T00:00,1\n2026-01-01T01:00,2\n")
    (tmp_path / "folder").mkdir()
    result = meterflow(tmp_path, "standardise", *args)
    assert expected in one_error(result, 2 if "kwhh" in args else 1)


def test_a_bad_cell_names_the_file_and_its_line(tmp_path):
    write(tmp_path / "export.csv", "timestamp,value\n2026-01-01T00:00,1\n2026-01-01T01:00,x\n")
    result = meterflow(tmp_path, "standardise", "export.csv", "--kind", "interval", "--unit", "Wh")
    assert one_error(result) == "error: export.csv:3: 'x' is not a number"


def test_values_print_in_full_precision(tmp_path):
    write(
        tmp_path / "export.csv",
        "timestamp,value\n2026-01-01T00:00,1234567.891\n2026-01-01T01:00,0.1\n",
    )
    result = meterflow(tmp_path, "standardise", "export.csv", "--kind", "interval", "--unit", "kWh")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "2026-01-01T00:00:00Z,1234567.891,kWh,measured,1",
        "2026-01-01T01:00:00Z,0.1,kWh,measured,1",
    ]


@pytest.mark.parametrize(
    ("file", "options"),
    [
        ("offsets.csv", ["--kind", "interval", "--unit", "kWh"]),
        ("nem12.csv", ["--format", "nem12", "--nmi", "NEM1201009"]),
    ],
)
def test_a_misspelt_zone_is_rejected_even_where_no_zone_applies(tmp_path, file, options):
    write(tmp_path / "offsets.csv", "timestamp,value\n2026-01-01T00:00+10:00,1\n")
    write(tmp_path / "nem12.csv", nem12())
    result = meterflow(tmp_path, "standardise", file, *options, "--tz", "Austrlia/Sydney")
    line = one_error(result, 2)
    assert "unknown time zone 'Austrlia/Sydney' (did you mean 'Australia/Sydney'?)" in line


@pytest.mark.parametrize(
    ("file", "options", "why"),
    [
        ("offsets.csv", ["--kind", "interval", "--unit", "kWh"], "every timestamp in offsets.csv"),
        ("nem12.csv", ["--format", "nem12", "--nmi", "NEM1201009"], "NEM time, UTC+10:00"),
        (
            "epoch.csv",
            ["--kind", "interval", "--unit", "kWh", "--timestamp-format", "epoch"],
            "UTC",
        ),
    ],
)
def test_a_zone_that_changes_nothing_is_noted_and_the_output_is_the_same(
    tmp_path, file, options, why
):
    write(
        tmp_path / "offsets.csv",
        "timestamp,value\n2026-01-01T00:00+10:00,1\n2026-01-01T01:00+10:00,2\n",
    )
    write(tmp_path / "nem12.csv", nem12())
    write(tmp_path / "epoch.csv", "timestamp,value\n1767225600,1\n1767229200,2\n")
    without = meterflow(tmp_path, "standardise", file, *options)
    result = meterflow(tmp_path, "standardise", file, *options, "--tz", "Europe/Paris")
    assert result.returncode == 0, result.stderr
    (note,) = result.stderr.splitlines()
    assert note.startswith("note: --tz has no effect") and why in note
    assert result.stdout == without.stdout != ""


def test_a_local_time_skipped_by_daylight_saving_is_explained(tmp_path):
    write(tmp_path / "export.csv", "timestamp,value\n2026-10-04T01:30,1\n2026-10-04T02:30,1\n")
    result = meterflow(
        tmp_path, "standardise", "export.csv", "--kind", "interval", "--unit", "kWh",
        "--tz", "Australia/Sydney", "--interval-minutes", "30",
    )  # fmt: skip
    line = one_error(result)
    assert line.startswith(
        "error: export.csv:3: 2026-10-04 02:30 does not exist in Australia/Sydney"
    )
    assert "clocks go forward an hour, from UTC+10:00 to UTC+11:00" in line
    assert "fixed offset +10:00" in line and "fix or remove that row" in line
    assert "nonexistent" not in line and "Try using" not in line


def test_a_repeated_local_time_that_cannot_be_told_apart_is_explained(tmp_path):
    write(tmp_path / "export.csv", "timestamp,value\n2026-04-05T02:30,1\n2026-04-05T03:30,1\n")
    result = meterflow(
        tmp_path, "standardise", "export.csv", "--kind", "interval", "--unit", "kWh",
        "--tz", "Australia/Sydney", "--interval-minutes", "30",
    )  # fmt: skip
    line = one_error(result)
    assert "2026-04-05 02:30 happens twice in Australia/Sydney" in line
    assert "clocks go back an hour, from UTC+11:00 to UTC+10:00" in line
    assert "2026-04-05T02:30+11:00" in line and "infer" not in line


def test_an_offset_out_of_range_is_explained(tmp_path):
    write(tmp_path / "export.csv", "timestamp,value\n2026-01-01T00:00,1\n")
    result = meterflow(
        tmp_path, "standardise", "export.csv", "--kind", "interval", "--unit", "kWh",
        "--tz", "+25:00",
    )  # fmt: skip
    line = one_error(result, 2)
    assert "'+25:00' is not a UTC offset" in line and "timedelta" not in line


def test_meter_xml_errors_name_its_file_and_line(tmp_path):
    write(
        tmp_path / "meter.xml",
        '<meter id="main" dataType="energy">\n'
        '  <csv path="exports/" kind="interval" unit="kWh"\n'
        '       timezone="Mars/Olympus"/>\n'
        "</meter>\n",
    )
    write(tmp_path / "export.csv", "timestamp,value\n2026-01-01T00:00,1\n")
    result = meterflow(tmp_path, "standardise", "export.csv", "--meter-xml", "meter.xml")
    assert one_error(result).startswith(
        "error: meter.xml:3: meter main: unknown time zone 'Mars/Olympus'"
    )


def test_options_that_contradict_the_unit_are_refused(tmp_path):
    write(tmp_path / "export.csv", "timestamp,value\n2026-01-01T00:00,1\n")
    result = meterflow(
        tmp_path, "standardise", "export.csv", "--kind", "instantaneous", "--unit", "kWh"
    )
    assert (
        one_error(result) == "error: options: meter cli: kind instantaneous needs a non-energy unit"
    )


def test_validate_reports_each_problem_on_stderr(tmp_path):
    write(tmp_path / "broken.xml", "<participant id='x'>\n<properties>\n</participant>\n")
    result = meterflow(tmp_path, "validate", "broken.xml", "missing.xml")
    assert result.returncode == 1 and result.stdout == ""
    first, second = result.stderr.splitlines()
    assert first.startswith("error: broken.xml:3: not well-formed XML")
    assert second == "error: missing.xml: No such file or directory"


def test_validate_warns_of_a_property_no_factor_table_covers(tmp_path):
    """A property in Japan (no shipped factor) is valid but warned of: its carbon will be NULL."""
    csv = '<csv path="exports/x/" kind="interval" unit="kWh"/>'
    write(
        tmp_path / "two.xml",
        f"""<participant id="two" name="Two sites"><properties>
  <property id="osaka" name="Osaka" timezone="Asia/Tokyo" country="JP" floorArea="100">
    <meter id="o1" dataType="energy">{csv}</meter></property>
  <property id="gent" name="Gent" timezone="Europe/Brussels" country="BE" floorArea="100">
    <meter id="g1" dataType="energy">{csv}</meter></property>
</properties></participant>""",
    )
    result = meterflow(tmp_path, "validate", "two.xml")
    assert result.returncode == 0 and result.stdout.startswith("two.xml: OK")
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("note: two.xml: property osaka: no emission factor for JP on ")
    assert "NULL (not zero)" in warning


def test_report_and_backfill_refuse_bad_options_in_one_line(tmp_path):
    bad_date = meterflow(
        tmp_path, "report", "--participant", "acme", "--from", "2026-13-01", "--to", "2026-04-02"
    )
    assert "argument --from: '2026-13-01' is not a date" in one_error(bad_date, 2)
    no_warehouse = meterflow(
        tmp_path, "report", "--participant", "acme", "--from", "2026-04-01",
        "--to", "2026-04-02", "--warehouse", "none.duckdb",
    )  # fmt: skip
    assert one_error(no_warehouse).startswith("error: none.duckdb: no warehouse file here")
    assert not (tmp_path / "none.duckdb").exists()
    half_hour = meterflow(
        tmp_path, "backfill", "--participant", "acme", "--from", "2026-04-01T00:30",
        "--to", "2026-04-02T00:00",
    )  # fmt: skip
    assert "'2026-04-01T00:30' is not a whole UTC hour" in one_error(half_hour, 2)


def test_a_backfill_of_an_unknown_participant_ends_in_one_line(tmp_path):
    result = meterflow(
        tmp_path, "backfill", "--participant", "nobody", "--from", "2026-04-01T00:00",
        "--to", "2026-04-02T00:00", "--data-root", "data",
    )  # fmt: skip
    assert one_error(result) == "error: nobody:config/participant.xml: no configuration file"
    assert "| INFO" not in result.stdout


def test_dispatch_shows_the_meters_and_one_line_per_failure_without_prefects_log(tmp_path):
    data_root = tmp_path / "data"
    demo_data.generate(data_root, DAY)
    # initech's XML names a zone that does not exist; globex's API meters have no blocks saved.
    shutil.copytree(data_root / "globex", data_root / "initech")
    config = data_root / "initech" / "config" / "participant.xml"
    config.write_text(
        config.read_text()
        .replace('id="globex"', 'id="initech"')
        .replace("Australia/Perth", "Australia/Atlantis")
    )
    result = meterflow(
        tmp_path, "dispatch", "--from", DAY.start.isoformat(), "--to", DAY.end.isoformat(),
        "--data-root", "data", "--participant", "globex", "--participant", "initech",
        "--warehouse", "elsewhere.duckdb",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert (tmp_path / "elsewhere.duckdb").exists() and not (
        data_root / "warehouse.duckdb"
    ).exists()
    assert "Traceback" not in output and "| INFO" not in output and "| ERROR" not in output
    assert result.stdout.startswith("dispatch 2026-04-03T00Z..2026-04-04T00Z: globex, initech\n")
    assert "Dispatch: meters" in result.stdout
    for meter in ("mel-store-main", "per-dc-main", "per-dc-pv", "per-dc-outside"):
        assert f"│ globex      │ {meter}" in result.stdout
    # A meter that failed got none of its 24 hours: they are missing, not "0 missing".
    for meter in ("per-dc-pv", "per-dc-outside"):
        row = (
            f"│ globex      │ {meter:<14} │         0 │         0 │            0 │            24 │"
        )
        assert row in result.stdout
    assert "meter-hours new or changed; 3 failed." in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, result.stderr
    assert errors[0].startswith("error: globex/per-dc-pv: meter per-dc-pv: cannot load block")
    assert errors[1].startswith("error: globex/per-dc-outside: meter per-dc-outside: cannot load")
    assert errors[2].startswith("error: initech/*: initech:config/participant.xml:")
    assert "unknown time zone 'Australia/Atlantis'" in errors[2]


def test_dispatch_verbose_shows_prefects_log(tmp_path):
    result = meterflow(
        tmp_path, "dispatch", "--verbose", "--from", DAY.start.isoformat(),
        "--to", DAY.end.isoformat(), "--data-root", "empty",
    )  # fmt: skip
    assert result.returncode == 1
    assert "| INFO    | Flow run 'dispatch/2026-04-03T00Z..2026-04-04T00Z'" in result.stderr
    assert "error: empty: no participants here (nor storage blocks)" in result.stderr
    assert "Traceback" not in result.stderr
