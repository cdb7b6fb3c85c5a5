"""Result files written one row group at a time, so writing a million-request run needs memory for one group,
not for whole columns (requests.parquet holds every token's ITL: 210 M values at 1M chat requests).

Groups of at most pyarrow's default row group length (2^20 rows), and for requests.parquet at most ITLS_PER_GROUP
ITL values: a run that fits one group writes the same bytes `pq.write_table` wrote for the whole table. Each group
is one table whose columns are single arrays, as in a slice of that table, so pages are cut in the same places.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_GROUP = 1 << 20  # pyarrow's default row group length (pq.write_table with row_group_size=None)
ITLS_PER_GROUP = 1 << 21  # ITL values per requests.parquet group: 16 MiB of float64, ~10,000 chat requests


def request_bounds(itl_counts: np.ndarray, max_itls: int | None = None, max_rows: int | None = None) -> list[int]:
    """Request indices where groups start, and the end: each group as many requests as fit max_itls ITL values
    and max_rows rows (at least one request); [0, 0] when there are none (one empty group, as write_table does)."""
    max_itls, max_rows = max_itls or ITLS_PER_GROUP, max_rows or ROWS_PER_GROUP
    n = len(itl_counts)
    through = np.cumsum(itl_counts)
    bounds = [0]
    while bounds[-1] < n:
        r = bounds[-1]
        fit = int(np.searchsorted(through, (int(through[r - 1]) if r else 0) + max_itls, side="right"))
        bounds.append(min(n, r + max_rows, max(r + 1, fit)))
    return bounds if n else [0, 0]


def row_bounds(rows: int, max_rows: int | None = None) -> list[int]:
    return list(range(0, rows, max_rows or ROWS_PER_GROUP)) + [rows] if rows else [0, 0]


def write_row_groups(path: str | Path, tables: Iterable[pa.Table]) -> None:
    """One row group per table, with pq.write_table's settings; the file is removed if a table fails."""
    writer = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(path).unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
