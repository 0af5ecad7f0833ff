"""Data frames to and from Arrow, as every stored Parquet file (run objects, day files, the
catalog) and every BigQuery upload is written and read."""

from __future__ import annotations

from datetime import UTC

import pandas as pd
import pyarrow as pa


def to_arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """A data frame as a pyarrow table (without its index), converted in this thread: for a
    frame of many rows pyarrow starts a pool of threads per call (16 ms a participant here, in
    a worker process that has a core of its own already)."""
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False, nthreads=1)


def from_arrow(table) -> pd.DataFrame:
    """A pyarrow table as a data frame whose UTC times carry the same zone object as pandas' own
    (`utc=True`): pandas concatenates times of two UTC objects into an object column."""
    frame = table.to_pandas()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(UTC)
    return frame
