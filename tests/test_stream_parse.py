"""A meter export parsed from a stream, a part at a time, gives what parsing it whole gives:
the same readings (columns, types, values, lines) or the same error (message and line), on the
real files and on edge cases, with parts small enough to cut the file at every position."""

from __future__ import annotations

import io
import zipfile
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

import connectors.csv as csv_connector
from connectors.csv import CsvConnector, _record_parts, parse_csv, parse_csv_stream
from connectors.nem12 import Nem12Connector, parse_nem12, parse_nem12_stream
from meterflow.common.errors import SourceDataError
from meterflow.configuration.config import CsvFormat, Meter, Nem12Settings
from tests.test_connectors import AUSGRID

SIZES = (1, 7, 64, 4096)  # part sizes: 1 cuts after every record
INTERVAL = CsvFormat(kind="interval", unit="kWh")  # the interval inferred from the file
HALF_HOURS = CsvFormat(kind="interval", unit="kWh", interval_minutes=30)
REGISTER = CsvFormat(kind="cumulative", unit="kWh")
SYDNEY = CsvFormat(
    kind="interval",
    unit="kWh",
    timestamp_column="t",
    value_column="v",
    timestamp_format="%Y-%m-%d %H:%M",
    timezone="Australia/Sydney",
)


class Reads:
    """A stream that cannot seek and refuses a read without a size or over `limit` bytes."""

    def __init__(self, data: bytes, limit: int):
        self.data, self.limit, self.largest = io.BytesIO(data), limit, 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and 0 <= size <= self.limit, f"read({size}), limit {self.limit}"
        self.largest = max(self.largest, size)
        return self.data.read(size)


def outcome(parse) -> tuple:
    """What a parse gives: its readings, or its error (message and line)."""
    try:
        readings = parse()
    except SourceDataError as exc:
        return ("error", exc.reason, exc.line)
    return ("readings", readings.kind, readings.unit, readings.frame)


def assert_same(got: tuple, want: tuple) -> None:
    assert got[:3] == want[:3]
    if want[0] == "readings":  # columns, their order and types, values and lines
        pd.testing.assert_frame_equal(got[3], want[3], check_exact=True)


def streams_like_whole(data: bytes, settings: CsvFormat, sizes=SIZES) -> tuple:
    """parse_csv's outcome, after checking parse_csv_stream gives it for each part size."""
    want = outcome(lambda: parse_csv(data, settings))
    for size in sizes:
        stream = Reads(data, size)
        assert_same(outcome(partial(parse_csv_stream, stream, settings, size)), want)
    return want


def csv(*rows: str, header: str = "timestamp,value", end: str = "\n") -> bytes:
    return "".join(f"{line}{end}" for line in (header, *rows)).encode()


HOURS = [f"2026-04-01T{h:02d}:00:00Z,{h}.5" for h in range(8)]  # lines 2-9 after a header


# Real files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["GC", "GG"])
def test_ausgrid_export_streams_like_whole(shared_data: Path, column):
    data = (shared_data / "ausgrid" / "customer12_2011-2012.csv").read_bytes()
    settings = AUSGRID.model_copy(update={"value_column": column})
    want = streams_like_whole(data, settings, sizes=(4096, 65536))
    assert len(want[3]) == 17568
    inferred = settings.model_copy(update={"interval_minutes": None})  # over the whole file
    assert_same(streams_like_whole(data, inferred, sizes=(65536,)), want)


def test_ausgrid_export_in_a_zone_with_daylight_saving_fails_on_the_same_line(shared_data):
    data = (shared_data / "ausgrid" / "customer12_2011-2012.csv").read_bytes()
    settings = AUSGRID.model_copy(update={"timezone": "Australia/Sydney"})
    want = streams_like_whole(data, settings, sizes=(65536,))  # standard time all year
    assert want[0] == "error" and "2011-10-02 02:00 does not exist" in want[1]
    assert want[2] == 4470  # in a later part


NEM12_REGISTERS = [
    (1, "NEM1201002", "E1"),
    (1, "NEM1201002", "E2"),
    (2, "NEM1202022", "B1"),
    (3, "NEM1203042", "E1"),
    (4, "NEM1204062", "E1"),
    (5, "NEM1205082", "E1"),
    (6, "NEM1206102", "E1"),
    (1, "NEM9999999", "E1"),
]


@pytest.mark.parametrize(("number", "nmi", "suffix"), NEM12_REGISTERS)
def test_nem12_samples_stream_like_whole(shared_data: Path, number, nmi, suffix):
    zipped = (shared_data / "nem12" / f"sample_0{number}.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        text = archive.read(archive.namelist()[0])
    want = outcome(lambda: parse_nem12(zipped, nmi, suffix))
    assert_same(outcome(lambda: parse_nem12(text, nmi, suffix)), want)
    for size in SIZES:
        for data in (zipped, text):  # a zip on a stream that cannot seek is read whole
            for stream in (io.BytesIO(data), Reads(data, size)):
                assert_same(outcome(partial(parse_nem12_stream, stream, nmi, suffix, size)), want)


# CSV edge cases --------------------------------------------------------------------------------

NOTE = "timestamp,value,note"
QUOTED = [f'2026-04-01T0{h}:00Z,{h},"a, b\n""c"",\r\nd"' for h in range(6)]

CASES = {
    # name: (data, settings, readings count, or (error message part, line))
    "plain": (csv(*HOURS), INTERVAL, 8),
    "byte order mark": (b"\xef\xbb\xbf" + csv(*HOURS), INTERVAL, 8),
    "byte order mark later is a character": (
        csv(*HOURS[:3], "\ufeffx,1"),
        REGISTER,
        ("ufeffx' is not a timestamp with an offset", 5),
    ),
    "CRLF": (csv(*HOURS, end="\r\n"), INTERVAL, 8),
    "CR alone": (csv(*HOURS, end="\r"), INTERVAL, 8),
    "blank lines": (csv("", *HOURS[:4], "", "", *HOURS[4:], "", end="\r\n"), INTERVAL, 8),
    "no line feed at the end": (csv(*HOURS).rstrip(b"\n"), INTERVAL, 8),
    "header only": (b"timestamp,value\n", REGISTER, 0),
    "header only, no line feed": (b"timestamp,value", REGISTER, 0),
    "header only, interval to infer": (b"timestamp,value\n", INTERVAL, ("one row", None)),
    "empty": (b"", REGISTER, ("No columns to parse", None)),
    "quoted fields": (csv(*QUOTED, header=NOTE), INTERVAL, 6),
    "quoted header over two lines": (
        csv("2026-04-01T00:00Z,1", "2026-04-01T00:30Z,2", header='"time\nstamp",value'),
        INTERVAL.model_copy(update={"timestamp_column": "time\nstamp"}),
        2,
    ),
    "quote inside an unquoted field": (
        csv('2026-04-01T00:00Z,1,x"y', '"2026-04-01T00:30Z",2,"z\n"', *HOURS[2:], header=NOTE),
        REGISTER,
        8,  # x"y is three characters; "z\n" a quoted field (a count of quotes would cut it)
    ),
    "one row": (csv(HOURS[0]), INTERVAL, ("one row is not enough", None)),
    "one row, its interval given": (csv(HOURS[0]), HALF_HOURS, 1),
    "two rows, one a part": (csv(*HOURS[:2]), INTERVAL, 2),
    "interval inferred over the whole file": (
        csv(*[f"2026-04-01T00:{m:02d}:00Z,1" for m in (0, 5, 10, 25, 30, 35, 40, 59)]),
        CsvFormat(kind="interval", unit="kWh", label="end"),
        8,
    ),
    "row by row: a format and a zone": (
        csv(*[f"06/04/2026 0{h}:00;{h},5" for h in range(6)], header="t;v").replace(b",", b"."),
        SYDNEY.model_copy(update={"timestamp_format": "%d/%m/%Y %H:%M", "delimiter": ";"}),
        6,
    ),
    "tab delimiter": (
        csv(*[h.replace(",", "\t") for h in HOURS], header="timestamp\tvalue"),
        INTERVAL.model_copy(update={"delimiter": "\t"}),
        8,
    ),
    "Unix times": (
        csv(*[f"{1775001600 + 1800 * i},{i}" for i in range(6)]),
        INTERVAL.model_copy(update={"timestamp_format": "epoch"}),
        6,
    ),
    "repeated hour told apart by row order": (
        csv(
            *[f"2026-04-05 {t},1" for t in ("01:00", "01:30", "02:00", "02:30", "02:00")],
            *[f"2026-04-05 {t},1" for t in ("02:30", "03:00", "03:30")],
            header="t,v",
        ),
        SYDNEY,
        8,
    ),
    "skipped hour, in a later part": (
        csv(*[f"2026-10-04 0{h}:{m},1" for h in range(4) for m in ("00", "30")], header="t,v"),
        SYDNEY,
        ("2026-10-04 02:00 does not exist in Australia/Sydney", 6),
    ),
    "time made outside the range by its zone, in a later part": (
        csv(*[f"2026-04-01 0{h}:00,1" for h in range(6)], "1900-01-01 00:00,1", header="t,v"),
        SYDNEY.model_copy(update={"timezone": "+10:00"}),
        ("'1900-01-01 00:00' is outside the times", 8),
    ),
    "not a number in a later part": (csv(*HOURS, "2026-04-01T09:00Z,abc"), REGISTER, ("'abc'", 10)),
    "a later bad time comes before an earlier bad value": (
        csv("2026-04-01T00:00Z,abc", *HOURS, "2026-13-01T00:00Z,1"),
        REGISTER,
        ("'2026-13-01T00:00Z' is not a timestamp in format 'iso'", 11),
    ),
    "times with and without offsets, in different parts": (
        csv(*[h.replace("T", " ").replace("Z", "") for h in HOURS[:4]], *HOURS[4:]),
        REGISTER,
        ("'2026-04-01 00:00:00' is not a timestamp with an offset", 2),
    ),
    "a row with a field too many, in a later part": (
        csv(*HOURS, "2026-04-01T09:00Z,1,2", *HOURS),
        REGISTER,
        ("Expected 2 fields in line 10, saw 3", None),
    ),
    "a quote never closed, in a later part": (
        csv(*HOURS, '"2026-04-01T09:00Z,1', *HOURS),
        REGISTER,
        ("EOF inside string starting at row 9", None),
    ),
    "first row with a field too many: pandas makes it an index": (
        csv(*[f"{h},x" for h in HOURS]),
        REGISTER,
        ("is not a timestamp", 2),
    ),
    "later row with a field too many than the first": (
        csv(HOURS[0], HOURS[1], "x," + HOURS[2], *HOURS[3:]),
        REGISTER,
        ("Expected 2 fields in line 4, saw 3", None),
    ),
    "a byte that is not UTF-8, in a later part: the row fails, naming its line": (
        csv(*HOURS) + b"2026-04-01T09:00Z,1\xff\n",
        REGISTER,
        ("'1\ufffd' is not a number", 10),
    ),
    "NaN spelled -nan is not a missing value": (
        csv(*HOURS, "2026-04-01T09:00Z,-nan"),
        REGISTER,
        ("'-nan' is not a number", 10),
    ),
    "values with a plus sign": (csv(*[h.replace(",", ",+") for h in HOURS]), REGISTER, 8),
    "a plus sign where a time only pandas reads sends the file row by row": (
        csv("2026-04-01 00:00:00 Z,1", *HOURS[1:], "2026-04-01T09:00Z,+9e-23"),
        REGISTER,
        9,  # pandas reads +9e-23 as 9.000000000000001e-23, pyarrow as 9e-23
    ),
    "header and first record ending in CR alone, then blank lines": (
        b"timestamp,value\r" + HOURS[0].encode() + b"\r" + "\n\n".join(HOURS[1:]).encode(),
        INTERVAL,
        8,
    ),
    "a blank line made by a CR alone, in a file with quotes": (
        csv(HOURS[0], '"2026-04-01T01:00Z",1', *HOURS[2:4])
        + b"\r"
        + csv(*HOURS[5:], header=HOURS[4]),
        REGISTER,
        8,
    ),
    "a skipped hour comes before a bad value on its row": (
        csv(
            *[f"2026-10-04 0{h}:00,1" for h in (0, 1, 3, 4, 5)], "2026-10-04 02:30,x", header="t,v"
        ),
        SYDNEY,
        ("2026-10-04 02:30 does not exist", 7),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_edge_case_streams_like_whole(case):
    data, settings, expected = CASES[case]
    want = streams_like_whole(data, settings)
    if isinstance(expected, int):
        assert want[0] == "readings" and len(want[3]) == expected
    else:
        assert want[0] == "error" and expected[0] in want[1] and want[2] == expected[1]


def test_a_byte_not_utf8_in_a_column_not_read_is_ignored_however_the_file_is_read():
    """pandas reads the whole file (it has a quote), pyarrow the part with the byte (no quote,
    without the note column): neither fails on a column it does not need."""
    rows = [f"{h},note" for h in HOURS[2:]]
    data = (
        csv(HOURS[0] + ",a", HOURS[1] + ',"b"', *rows, header=NOTE) + b"2026-04-01T09:00Z,1,\xff\n"
    )
    assert streams_like_whole(data, REGISTER, sizes=(64,))[0] == "readings"


def test_blank_lines_keep_their_line_numbers():
    data = csv("", *HOURS[:4], "", "", *HOURS[4:], "", end="\r\n")
    readings = parse_csv_stream(io.BytesIO(data), INTERVAL, 7)
    assert readings.frame.line.tolist() == [3, 4, 5, 6, 9, 10, 11, 12]


def test_a_record_longer_than_a_part_is_not_cut():
    note = '"' + "a line,\n" * 500 + '"'
    data = csv(*[f"{h},{note}" for h in HOURS], header=NOTE)
    assert streams_like_whole(data, INTERVAL, sizes=(64,))[0] == "readings"
    parts = list(_record_parts(io.BytesIO(data), ",", 64))
    assert b"".join(parts) == data and len(parts) == 9  # the header, then each row whole
    assert all(part.endswith(b'"\n') for part in parts[1:])


def test_reads_and_parts_are_bounded(monkeypatch):
    """The bytes held: reads of at most part_bytes, and parts handed to the reader of at most
    two parts (with the header and first record before them) when records are shorter."""
    size = 4096
    data = csv(
        *[f"{1775001600 + 1800 * i},{i}.25,{'x' * (i % 90)}" for i in range(3000)], header=NOTE
    )
    settings = INTERVAL.model_copy(update={"timestamp_format": "epoch"})
    handed: list[int] = []
    read_rows = csv_connector._read_rows

    def counting(files, settings, errors):
        handed.append(len(files[0]))
        return read_rows(files, settings, errors)

    monkeypatch.setattr(csv_connector, "_read_rows", counting)
    stream = Reads(data, size)
    readings = parse_csv_stream(stream, settings, size)
    assert len(readings.frame) == 3000 and stream.largest == size
    prefix = len(data.split(b"\n")[0]) + len(data.split(b"\n")[1]) + 2  # header, first record
    assert len(handed) > len(data) // (2 * size) and max(handed) < 2 * size + prefix


def test_connectors_parse_a_stream_like_a_payload(shared_data: Path):
    data = (shared_data / "ausgrid" / "customer12_2011-2012.csv").read_bytes()
    meter = Meter(id="m", property_id="p", data_type="energy", connector=AUSGRID)
    connector = CsvConnector()
    assert_same(
        outcome(lambda: connector.parse_stream(io.BytesIO(data), "a.csv", meter)),
        outcome(lambda: connector.parse(data, "a.csv", meter)),
    )
    zipped = (shared_data / "nem12" / "sample_01.zip").read_bytes()
    settings = Nem12Settings(path="n/", nmi="NEM1201002", suffix="E1")
    meter = Meter(id="n", property_id="p", data_type="energy", connector=settings)
    connector = Nem12Connector()
    assert_same(
        outcome(lambda: connector.parse_stream(io.BytesIO(zipped), "a.zip", meter)),
        outcome(lambda: connector.parse(zipped, "a.zip", meter)),
    )


# NEM12 -----------------------------------------------------------------------------------------

NMI = "NEM1201002"


def nem12(*records: str, end: str = "\n", days: int = 3) -> bytes:
    day = ",".join(["0.5"] * 48)
    body = [f"300,2026040{d + 1},{day},A,,,20260410000000," for d in range(days)]
    lines = ["100,NEM12,200505181432,A,B", f"200,{NMI},E1E2,E1,E1,N1,1,KWH,30,", *body, *records]
    return "".join(f"{line}{end}" for line in lines).encode()


def nem12_streams_like_whole(data: bytes, sizes=SIZES) -> tuple:
    want = outcome(lambda: parse_nem12(data, NMI, "E1"))
    for size in sizes:
        for stream in (io.BytesIO(data), Reads(data, size)):
            assert_same(outcome(partial(parse_nem12_stream, stream, NMI, "E1", size)), want)
    return want


def zipped(*members: bytes, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression) as z:
        for i, member in enumerate(members):
            z.writestr(f"m{i}.csv", member)
    return archive.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        nem12("900"),
        nem12("900", end="\r\n"),
        nem12("900", end="\r"),  # a record per line, where the whole file once broke csv
        b"\xef\xbb\xbf" + nem12("900"),
        nem12().rstrip(b"\n"),
        zipped(nem12("900"), nem12("900", end="\r\n")),
    ],
    ids=["LF", "CRLF", "CR", "byte order mark", "no line feed at the end", "zip of two"],
)
def test_nem12_lines_stream_like_whole(data):
    want = nem12_streams_like_whole(data)
    assert want[0] == "readings" and len(want[3]) == 48 * 3 * (2 if data[:2] == b"PK" else 1)


def test_nem12_error_in_a_later_part_names_its_line():
    data = nem12("300,20260409,1,2,A", "900")
    assert nem12_streams_like_whole(data)[1:] == (
        "300 record has 2 interval values before its quality method 'A'; the 200 record's "
        "30-minute intervals need 48",
        6,
    )


def whole_decode_error(data: bytes) -> str:
    with pytest.raises(UnicodeDecodeError) as caught:
        data.decode("utf-8-sig")
    return f"not a text file: {caught.value}"


@pytest.mark.parametrize(
    "data",
    [
        nem12("300,20260409,1,2,A", "900") + b"x\xff\n",  # after a bad record: comes first
        nem12("900") + b"after the end \xe2\x82",  # after the 900 record: a character cut short
        b"\xef\xbb\xbf" + nem12(days=40) + b"\xc3(\n",  # counted after the mark
    ],
    ids=["after a bad record", "after the end record", "after the byte order mark"],
)
def test_nem12_text_that_is_not_utf8_says_where_as_decoding_it_whole(data):
    assert nem12_streams_like_whole(data, sizes=(1, 7, 4096)) == (
        "error",
        whole_decode_error(data),
        None,
    )


def test_nem12_zip_faults_come_before_a_bad_record():
    bad_record, not_text = nem12("300,20260409,1,2,A"), nem12() + b"\xff\n"
    data = zipped(bad_record, not_text)
    assert nem12_streams_like_whole(data, sizes=(7, 4096))[1] == whole_decode_error(not_text)
    data = zipped(bad_record, nem12(), compression=zipfile.ZIP_STORED)
    member = zipfile.ZipFile(io.BytesIO(data)).getinfo("m1.csv")
    start = member.header_offset + 30 + len("m1.csv") + member.compress_size // 2
    broken = data[:start] + b"9" + data[start + 1 :]  # its checksum is checked at its end
    assert nem12_streams_like_whole(broken, sizes=(7, 4096)) == (
        "error",
        "not a readable zip file: Bad CRC-32 for file 'm1.csv'",
        None,
    )
