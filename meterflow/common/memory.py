"""Give freed memory back to the operating system between units of work."""

from __future__ import annotations

import ctypes
import ctypes.util

import pyarrow as pa

# Arrow's buffers come from the C library's allocator, not pyarrow's bundled mimalloc, which
# kept more of what a merge or a load freed: at 10,000 meters x 30 days in participants of
# 1,000, the flow and its workers peaked at 917-949 MiB PSS against 1,001-1,009; six alternating
# bare backfills took 1.009 times as long (medians of their rounds' ratios). Every process that
# frees Arrow memory imports this module.
pa.set_memory_pool(pa.system_memory_pool())

_libc_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_libc_name) if _libc_name else None


def release_memory() -> None:
    """Return freed heap pages to the OS. pandas and pyarrow free a merge's or a load's buffers
    into glibc's arenas, which keep them: a flow or worker process that has merged a month of
    day files would otherwise stay at that peak for the rest of the run, and the flow and its
    workers together would hold several such peaks at once."""
    pa.default_memory_pool().release_unused()
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)
