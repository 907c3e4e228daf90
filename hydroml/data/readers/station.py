"""Readers ``station_csv`` (generic station/gauge CSV tables) and ``knmi`` (KNMI daily station files).

``station_csv`` reads tables with a date column and value columns, one file per station (the id is the file stem)
or a long table with an id column. ``knmi`` reads the daily files of the Royal Netherlands Meteorological Institute
(``etmgeg_<station>.txt``): values are stored in tenths of a unit (0.1 mm, 0.1 degC, 0.1 m/s, 0.1 hPa, 0.1 h) and
``-1`` in ``RH``, ``RHX`` and ``SQ`` means "less than 0.05"; the reader scales to whole units and replaces the
``-1`` codes by ``trace_value`` (default 0.025, the middle of [0, 0.05)).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hydroml.data.readers import register_reader
from hydroml.data.readers._common import detect_encoding, numeric_columns, read_table
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.data")


def _files(path: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in suffixes)
    else:
        files = sorted(Path(f) for f in glob.glob(str(p)))
    if not files:
        raise DataError(f"no file found at {str(path)!r} (expected a file, a folder of {suffixes} or a glob)")
    return files


def frames_to_dataset(
    frames: Mapping[str, pd.DataFrame], *, dim: str = "basin", units: Mapping[str, str] | None = None
) -> xr.Dataset:
    """Stack per-station DataFrames (indexed by time, same columns) into a ``(dim, time)`` Dataset.

    Parameters
    ----------
    frames : mapping of str to pandas.DataFrame
        One frame per station id, indexed by a DatetimeIndex; dates are joined (outer), gaps become NaN.
    dim : str
        Name of the station dimension (``basin`` by the data contract; ``station`` for point observations).
    units : mapping, optional
        ``units`` attribute per column.

    Returns
    -------
    xarray.Dataset
    """
    if not frames:
        raise DataError("no station data to stack")
    ids = list(frames)
    time = None
    columns: list[str] = []
    for f in frames.values():
        time = f.index if time is None else time.union(f.index)
        columns += [c for c in f.columns if c not in columns]
    data_vars = {}
    for col in columns:
        arr = np.stack(
            [
                frames[i][col].reindex(time).to_numpy(dtype="float64")
                if col in frames[i]
                else np.full(len(time), np.nan)
                for i in ids
            ]
        )
        data_vars[col] = ((dim, "time"), arr, {"units": units[col]} if units and col in units else {})
    return xr.Dataset(
        data_vars,
        coords={
            dim: np.array(ids, dtype=str),
            "time": pd.DatetimeIndex(time).values.astype("datetime64[ns]"),
        },
    )


@register_reader("station_csv")
def read_station_csv(
    path: str | Path,
    *,
    date_column: str = "date",
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    station_id: str | None = None,
    sep: str = ",",
    date_format: str | None = None,
    missing_values: Sequence[float] | float | None = None,
    units: Mapping[str, str] | None = None,
    dim: str = "basin",
    comment: str | None = None,
    encoding: str | None = None,
    **options,
) -> xr.Dataset:
    """Read station (gauge or weather station) CSV tables into a ``(dim, time)`` Dataset.

    Parameters
    ----------
    path : str or Path
        A file, a folder of ``*.csv``/``*.txt`` files, or a glob; without ``id_column`` each file is one station
        whose id is its file stem (or ``station_id`` for a single file).
    date_column : str
        Column holding the dates (parsed with ``date_format`` when given).
    columns : sequence of str, optional
        Value columns to keep (error naming the missing ones); default all numeric columns.
    id_column : str, optional
        Column holding the station id, for long tables with several stations.
    station_id : str, optional
        Id of the station of a single file without ``id_column``.
    sep : str
        Field separator (``","``; ``r"\\s+"`` for whitespace).
    date_format : str, optional
        ``strftime`` format of the dates, e.g. ``"%Y%m%d"``.
    missing_values : float or sequence, optional
        Sentinels such as ``-999`` to read as NaN (empty fields are NaN anyway).
    units : mapping, optional
        ``units`` attribute per column, for the catalog's unit conversion.
    dim : str
        Name of the station dimension (``basin`` by default).
    comment : str, optional
        Lines starting with this character are skipped.
    encoding : str, optional
        Text encoding; by default detected (UTF-8, UTF-16 with or without a byte-order mark, else latin-1,
        logged). A file that does not decode with a given encoding is an error naming the line.
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        Variables on ``(dim, time)``, string ids; duplicated dates, ragged rows, cells that are not numbers
        and undeclared ``-999``/``-9999`` sentinels raise :class:`~hydroml.exceptions.DataError` naming the
        file (and line).
    """
    if options:
        raise DataError(f"station_csv: unknown reader options {sorted(options)}")
    files = _files(path, (".csv", ".txt"))
    if station_id is not None and (len(files) > 1 or id_column is not None):
        raise DataError("station_csv: station_id is for a single file without id_column")
    na = (
        []
        if missing_values is None
        else ([missing_values] if np.isscalar(missing_values) else missing_values)
    )
    try:
        na = [float(v) for v in na]
    except (TypeError, ValueError):
        raise DataError(f"station_csv: missing_values must be numbers, found {missing_values!r}") from None
    frames: dict[str, pd.DataFrame] = {}
    for f in files:
        df = read_table(
            f,
            f"a {sep!r}-separated table with a header row, a {date_column!r} column and numeric value columns",
            sep=sep,
            comment=comment,
            na_values=[str(v) for v in na] + [f"{v:g}" for v in na],
            skipinitialspace=True,
            encoding=detect_encoding(f, encoding),
        )
        df.columns = [str(c).strip() for c in df.columns]
        need = [date_column] + ([id_column] if id_column else []) + list(columns or [])
        absent = [c for c in need if c not in df.columns]
        if absent:
            raise DataError(f"{f}: columns {absent} not found; columns are {list(df.columns)}")
        try:
            dates = pd.to_datetime(df[date_column].astype(str).str.strip(), format=date_format)
        except (ValueError, TypeError) as err:
            raise DataError(f"{f}: cannot parse dates in column {date_column!r}: {err}") from err
        df = df.drop(columns=[date_column])
        df.index = pd.DatetimeIndex(dates, name="time")
        groups = df.groupby(df.pop(id_column).astype(str).str.strip()) if id_column else [(None, df)]
        for sid, g in groups:
            value_cols = list(columns) if columns else list(g.select_dtypes("number").columns)
            if not value_cols:
                raise DataError(f"{f}: no numeric value column; columns are {list(g.columns)}")
            g = numeric_columns(
                g[value_cols],
                value_cols,
                f,
                first_line=2,
                what="a number (a sentinel missing from missing_values?)",
            )
            key = sid if sid is not None else (station_id or f.stem)
            if g.index.has_duplicates:
                dup = g.index[g.index.duplicated()][0]
                raise DataError(f"{f}: station {key!r} has duplicated dates, first {dup}")
            if key in frames:
                raise DataError(f"{f}: station {key!r} appears in more than one file")
            frames[key] = g.sort_index()
    ds = frames_to_dataset(frames, dim=dim, units=units)
    from hydroml.data.io import check_sentinels

    check_sentinels(ds, source=str(files[0]) if len(files) == 1 else str(path), declared=na)
    ds.attrs["source_path"] = str(path)
    return ds


#: KNMI daily columns stored in tenths of the unit given here.
KNMI_TENTHS = {
    "FHVEC": "m s-1",
    "FG": "m s-1",
    "FHX": "m s-1",
    "FHN": "m s-1",
    "FXX": "m s-1",
    "TG": "degC",
    "TN": "degC",
    "TX": "degC",
    "T10N": "degC",
    "SQ": "h d-1",
    "DR": "h d-1",
    "RH": "mm d-1",
    "RHX": "mm h-1",
    "PG": "hPa",
    "PX": "hPa",
    "PN": "hPa",
    "EV24": "mm d-1",
}
#: KNMI columns in whole units.
KNMI_UNITS = {"DDVEC": "degree", "Q": "J cm-2 d-1", "SP": "%", "UG": "%", "UX": "%", "UN": "%", "NG": "1"}
#: Columns where -1 codes "less than 0.05".
KNMI_TRACE = ("RH", "RHX", "SQ")


@register_reader("knmi")
def read_knmi(
    path: str | Path,
    *,
    trace_value: float = 0.025,
    columns: Sequence[str] | None = None,
    dim: str = "station",
    **options,
) -> xr.Dataset:
    """Read KNMI daily station files (``etmgeg_<station>.txt``).

    Parameters
    ----------
    path : str or Path
        One file, a folder of ``etmgeg_*.txt`` files, or a glob.
    trace_value : float
        Value (in whole units, e.g. mm) given to the ``-1`` code ("< 0.05") in ``RH``, ``RHX`` and ``SQ``;
        the default 0.025 is the middle of the interval, 0 is the other usual choice.
    columns : sequence of str, optional
        Columns to keep (default all).
    dim : str
        Name of the station dimension (``station``; ids are the ``STN`` numbers as strings).
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        Variables named as in the file (``RH``, ``EV24``, ``TG``...) on ``(dim, time)``, scaled to whole units,
        with ``units`` attributes (``RH`` and ``EV24`` in mm d-1, ``TG`` in degC, ``Q`` in J cm-2 d-1).
    """
    if options:
        raise DataError(f"knmi: unknown reader options {sorted(options)}")
    p = Path(path)
    files = sorted(p.glob("etmgeg_*.txt")) if p.is_dir() else _files(path, (".txt",))
    if not files:
        raise DataError(f"knmi: no etmgeg_*.txt file in {p}")
    frames: dict[str, pd.DataFrame] = {}
    for f in files:
        header_line = None
        with open(f, encoding="latin-1") as fh:
            for i, line in enumerate(fh):
                if line.lstrip().startswith("# STN") or line.lstrip().startswith("STN,"):
                    header_line = i
                    names = [c.strip() for c in line.lstrip("# ").strip().split(",")]
                    break
        if header_line is None:
            raise DataError(f"{f}: no KNMI column header line ('# STN,YYYYMMDD,...') found")
        layout = "KNMI daily rows 'STN,YYYYMMDD,...' of integers after the '# STN,YYYYMMDD' header"
        df = read_table(
            f,
            layout,
            skiprows=header_line + 1,
            header=None,
            names=names,
            skipinitialspace=True,
            na_values=[""],
            encoding="latin-1",
            dtype=str,
        )
        df = df.dropna(how="all")
        if "YYYYMMDD" not in df.columns or "STN" not in df.columns:
            raise DataError(f"{f}: KNMI header has no STN / YYYYMMDD column; columns are {names}")
        first = header_line + 2
        dates = pd.to_datetime(df.pop("YYYYMMDD").str.strip(), format="%Y%m%d", errors="coerce")
        if dates.isna().any():
            i = int(np.flatnonzero(dates.isna().to_numpy())[0])
            raise DataError(f"{f}, line {first + i}: YYYYMMDD is not a date; expected {layout}")
        stations = numeric_columns(df[["STN"]], ["STN"], f, first_line=first, what="a station number")["STN"]
        if stations.isna().any():
            i = int(np.flatnonzero(stations.isna().to_numpy())[0])
            raise DataError(f"{f}, line {first + i}: no station number (STN); expected {layout}")
        stations = stations.astype(int).astype(str)
        df = df.drop(columns=["STN"])
        df = numeric_columns(df, list(df.columns), f, first_line=first, what="an integer (KNMI code)")
        df.index = pd.DatetimeIndex(dates, name="time")
        if columns is not None:
            absent = [c for c in columns if c not in df.columns]
            if absent:
                raise DataError(f"{f}: KNMI columns {absent} not found; available: {list(df.columns)}")
            df = df[list(columns)]
        for col in df.columns:
            if col in KNMI_TRACE:
                n = int((df[col] == -1).sum())
                df[col] = df[col].where(df[col] != -1, trace_value * 10.0)
                log.debug("%s: %s has %d '< 0.05' codes set to %s", f.name, col, n, trace_value)
            if col in KNMI_TENTHS:
                df[col] = df[col] / 10.0
        for sid, g in df.groupby(stations.to_numpy()):
            if g.index.has_duplicates:
                raise DataError(
                    f"{f}: station {sid} has duplicated dates, first {g.index[g.index.duplicated()][0]}"
                )
            if sid in frames:
                raise DataError(f"{f}: station {sid} appears in more than one file")
            frames[sid] = g
    units = {**{k: v for k, v in KNMI_TENTHS.items()}, **KNMI_UNITS}
    ds = frames_to_dataset(frames, dim=dim, units=units)
    for col in KNMI_TRACE:
        if col in ds:
            ds[col].attrs["comment"] = f"KNMI code -1 (< 0.05) replaced by {trace_value}"
    ds.attrs.update(source="KNMI daily station data", source_path=str(path))
    return ds
