"""Tables of recorded runs: scalar streams and key figures, as CSV or pandas DataFrames.

A stream's scalar data keys (one number or string per event: the board clock, cells out of
tolerance, the read mode...) make a table with one row per event; arrays (conductance
maps, MVM batches) stay in the HDF5 file.  The key figures of runs
(`labcim.key_figures`) make a table with one row per figure.  CSV needs nothing beyond
the standard library; DataFrames need pandas (``pip install 'labcim[pandas]'``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from labcim.hdf5.reader import Run, Stream
from labcim.key_figures import key_figures
from labcim.output_files import check_free, csv_with_header, write_file

KEY_FIGURE_COLUMNS = ("run", "uid", "plan_name", "group", "name", "value", "unit", "key")


def scalar_columns(stream: Stream) -> dict[str, np.ndarray]:
    """``seq_num``, ``time`` (s since the epoch) and every scalar data key of ``stream``,
    one value per event."""
    columns = {"seq_num": stream.seq_num, "time": stream.time}
    for key in stream:
        shape = stream.lazy(key).shape
        if len(shape) == 1:
            columns[key] = np.asarray(stream[key])
    return columns


def key_figure_rows(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One row per key figure of each run (`KEY_FIGURE_COLUMNS`)."""
    return [
        {"run": run.number, "uid": run.uid, "plan_name": run.plan_name, **figure.as_dict()}
        for run in runs
        for figure in key_figures(run)
    ]


def write_csv(runs: Iterable[Run], folder: str | Path) -> list[Path]:
    """Write ``key_figures.csv`` and ``runNNNNNN_<stream>.csv`` (scalar columns of each
    stream that has events) into ``folder`` (created); return the paths written.

    Tables labcim wrote before under those names are replaced.

    Raises
    ------
    ForeignFileError
        A file labcim did not write is at one of the names: nothing is written.
    """
    folder = Path(folder)
    runs = list(runs)
    key_table = folder / "key_figures.csv"
    streams = [
        (folder / f"run{run.number:06d}_{name}.csv", stream)
        for run in runs
        for name, stream in run.streams.items()
        if len(stream)
    ]
    # Every name is checked before anything is written: a foreign file changes nothing.
    tables = [(key_table, _KEY_TABLE), *((path, _STREAM_TABLE) for path, _ in streams)]
    check_free((path, ours, "table") for path, ours in tables)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_write(key_table, KEY_FIGURE_COLUMNS, key_figure_rows(runs), _KEY_TABLE)]
    for path, stream in streams:
        columns = scalar_columns(stream)
        table = zip(*columns.values(), strict=True)
        rows = [dict(zip(columns, values, strict=True)) for values in table]
        paths.append(_write(path, columns, rows, _STREAM_TABLE))
    return paths


_KEY_TABLE = csv_with_header(*KEY_FIGURE_COLUMNS)
_STREAM_TABLE = csv_with_header("seq_num", "time")  # the first columns of every stream's table


def _write(
    path: Path, header: Iterable[str], rows: list[dict[str, Any]], ours: Callable[[Path], bool]
) -> Path:
    def write(temporary: Path) -> None:
        with temporary.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(header))
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)

    return write_file(path, write, ours, "table")


def _cell(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def dataframe(run: Run, stream: str = "primary") -> Any:
    """The scalar columns of one stream of ``run`` as a pandas DataFrame, indexed by
    ``seq_num``.

    Raises
    ------
    ImportError
        If pandas is not installed (naming the extra that installs it).
    KeyError
        If the run has no such stream.
    """
    pandas = _pandas()
    if stream not in run.streams:
        raise KeyError(f"{run.path} has no stream {stream!r}; it has {sorted(run.streams)}")
    return pandas.DataFrame(scalar_columns(run.streams[stream])).set_index("seq_num")


def key_figures_frame(runs: Iterable[Run]) -> Any:
    """The key figures of ``runs`` as a pandas DataFrame (`KEY_FIGURE_COLUMNS`)."""
    return _pandas().DataFrame(key_figure_rows(runs), columns=list(KEY_FIGURE_COLUMNS))


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("DataFrames need pandas: pip install 'labcim[pandas]'") from None
    return pandas
