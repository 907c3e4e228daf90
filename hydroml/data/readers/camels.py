"""Reader ``camels_us``: the CAMELS-US file layout (Newman et al. 2015; Addor et al. 2017).

Layout under the dataset root::

    basin_mean_forcing/<source>/[<huc>/]<gauge_id>_lump_<tag>_forcing_leap.txt
    usgs_streamflow/[<huc>/]<gauge_id>_streamflow_qc.txt
    camels_attributes_v2.0/camels_<group>.txt          (';'-separated, all 671 basins)
    basins.txt                                          (optional list of gauge ids)

Forcing files start with three header lines (basin-mean latitude, mean elevation in m, area in m2), then a
table ``Year Mnth Day Hr dayl(s) prcp(mm/day) srad(W/m2) swe(mm) tmax(C) tmin(C) vp(Pa)`` whose column names vary
in case between sources. Streamflow files hold ``gauge_id year month day discharge flag`` with discharge in cubic
feet per second, ``-999`` for missing days and a quality flag (``A``, ``A:e``, ``M``).

The reader keeps source names and units (``prcp`` in ``mm d-1``, ``streamflow`` in ``ft3 s-1``...): the catalog
layer converts into canonical names and units. ``area_km2`` comes from the forcing header.

References
----------
Newman, A. J. et al. (2015): Development of a large-sample watershed-scale hydrometeorological data set for the
contiguous USA, HESS 19, 209-223, doi:10.5194/hess-19-209-2015.
Addor, N. et al. (2017): The CAMELS data set: catchment attributes and meteorology for large-sample studies,
HESS 21, 5293-5313, doi:10.5194/hess-21-5293-2017.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hydroml._progress import tqdm
from hydroml.data.readers import register_reader
from hydroml.data.readers._common import (
    add_statics,
    dates_from_columns,
    join_attribute_tables,
    numeric_columns,
    read_table,
    select_attributes,
    select_basins,
)
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.data")

FORCING_SOURCES = ("daymet", "maurer", "maurer_extended", "nldas")
#: CAMELS header units -> unit strings understood by hydroml.data.variables.
_UNITS = {"mm/day": "mm d-1", "w/m2": "W m-2", "c": "degC", "pa": "Pa", "s": "s", "mm": "mm"}
STREAMFLOW_MISSING = -999.0


def _parse_basins(basins: str | Path | Sequence[str] | None, root: Path) -> list[str] | None:
    if basins is None:
        default = root / "basins.txt"
        if default.is_file():
            basins = default
        else:
            return None
    if isinstance(basins, (str, Path)) and not (isinstance(basins, str) and re.fullmatch(r"\d{8}", basins)):
        p = Path(basins)
        if not p.is_absolute() and not p.is_file():
            p = root / p
        if not p.is_file():
            raise DataError(f"camels_us: basin list file {str(p)!r} not found")
        return [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if isinstance(basins, str):
        return [basins]
    return [str(b).zfill(8) if str(b).isdigit() else str(b) for b in basins]


def _index(folder: Path, pattern: str) -> dict[str, Path]:
    """Map gauge id -> file for all files matching ``pattern`` under ``folder`` (HUC subfolders included)."""
    out = {}
    for f in sorted(folder.rglob(pattern)):
        out[f.name[:8]] = f
    return out


def read_forcing_file(path: str | Path) -> tuple[pd.DataFrame, dict[str, float], dict[str, str]]:
    """Read one CAMELS-US basin-mean forcing file.

    Parameters
    ----------
    path : str or Path
        A ``<gauge_id>_lump_*_forcing_leap.txt`` file.

    Returns
    -------
    frame : pandas.DataFrame
        Daily values indexed by date, columns named in lower case without units (``prcp``, ``srad``...).
    header : dict
        ``lat`` (degrees north), ``elevation`` (m) and ``area_km2`` from the three header lines.
    units : dict
        Unit of each column.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            head = [fh.readline() for _ in range(3)]
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not a CAMELS-US forcing text file (not UTF-8/ASCII: {err.reason})"
        ) from None
    try:
        lat, elev, area_m2 = (float(h.strip()) for h in head)
    except ValueError as err:
        raise DataError(
            f"{path}: expected 3 header lines (latitude, elevation, area in m2), found {head!r}"
        ) from err
    if not (-90 <= lat <= 90) or not area_m2 > 0:
        raise DataError(
            f"{path}: header latitude {lat:g} (expected -90..90) or area {area_m2:g} m2 (expected > 0) is impossible"
        )
    layout = "a header 'Year Mnth Day Hr dayl(s) prcp(mm/day) ...' then one row of numbers per day"
    df = read_table(path, layout, sep=r"\s+", skiprows=3, dtype=str)
    names, units = {}, {}
    for col in df.columns:
        m = re.fullmatch(r"([A-Za-z_]+)\((.*)\)", col)
        if m:
            short = m.group(1).lower()
            names[col] = short
            units[short] = _UNITS.get(m.group(2).lower(), m.group(2))
    date_cols = {"year": "Year", "month": "Mnth", "day": "Day"}
    missing = [c for c in date_cols.values() if c not in df.columns]
    if missing:
        raise DataError(f"{path}: date columns {missing} not found; columns are {list(df.columns)}")
    short = df.isna().any(axis=1).to_numpy()
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise DataError(
            f"{path}, line {i + 5}: row has {int(df.iloc[i].notna().sum())} field(s), expected {len(df.columns)} "
            f"({' '.join(df.columns)})"
        )
    index = dates_from_columns(df, date_cols, path, first_line=5)
    frame = numeric_columns(df, list(names), path, first_line=5)[list(names)].rename(columns=names)
    frame.index = pd.DatetimeIndex(index, name="time")
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()]
        raise DataError(f"{path}: duplicated dates, first {dup[0].date()}")
    return frame, {"lat": lat, "elevation": elev, "area_km2": area_m2 / 1e6}, units


def read_streamflow_file(path: str | Path) -> pd.DataFrame:
    """Read one CAMELS-US ``<gauge_id>_streamflow_qc.txt`` file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    pandas.DataFrame
        Indexed by date with ``streamflow`` (ft3 s-1, ``-999`` replaced by NaN) and ``streamflow_qc`` (flag).
    """
    path = Path(path)
    layout = "rows 'gauge_id year month day discharge flag' (e.g. '01013500 1980 01 01 655.00 A')"
    df = read_table(
        path,
        layout,
        sep=r"\s+",
        header=None,
        names=["gauge_id", "year", "month", "day", "streamflow", "streamflow_qc"],
        dtype=str,
    )
    if df.empty:
        raise DataError(f"{path}: no data rows; expected {layout}")
    short = df[["gauge_id", "year", "month", "day", "streamflow"]].isna().any(axis=1).to_numpy()
    if short.any():
        i = int(np.flatnonzero(short)[0])
        found = " ".join(str(v) for v in df.iloc[i].dropna())
        raise DataError(
            f"{path}, line {i + 1}: short row {found!r} ({int(short.sum())} such row(s)); expected {layout}"
        )
    index = dates_from_columns(df, {"year": "year", "month": "month", "day": "day"}, path, first_line=1)
    df = numeric_columns(df, ["streamflow"], path, first_line=1, what="a discharge in ft3 s-1 (or -999)")
    q = df["streamflow"].astype("float64")
    q = q.where(q != STREAMFLOW_MISSING)
    out = pd.DataFrame(
        {"streamflow": q.to_numpy(), "streamflow_qc": df["streamflow_qc"].fillna("").to_numpy()}
    )
    out.index = pd.DatetimeIndex(index, name="time")
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()]
        raise DataError(f"{path}: duplicated dates, first {dup[0].date()}")
    return out


def read_attributes(
    root: str | Path, basins: Sequence[str] | None = None, attributes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read the CAMELS-US catchment attributes (all ``camels_*.txt`` files, ';'-separated).

    Parameters
    ----------
    root : str or Path
        Dataset root (holding ``camels_attributes_v2.0/``) or the attributes folder itself.
    basins : sequence of str, optional
        Keep these gauge ids, in this order (error naming those absent).
    attributes : sequence of str, optional
        Keep these columns (error naming the unknown ones, with those available); default all numeric ones.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``gauge_id`` (8-character strings).
    """
    root = Path(root)
    folder = (
        root if list(root.glob("camels_*.txt")) else next(iter(sorted(root.glob("camels_attributes*"))), None)
    )
    if folder is None or not list(Path(folder).glob("camels_*.txt")):
        raise DataError(f"camels_us: no camels_attributes*/camels_*.txt files under {root}")
    frames = []
    for f in sorted(Path(folder).glob("camels_*.txt")):
        df = pd.read_csv(f, sep=";", dtype={"gauge_id": str}, na_values=["NA", "NaN", ""])
        df["gauge_id"] = df["gauge_id"].str.strip().str.zfill(8)
        frames.append(df.set_index("gauge_id"))
    table = join_attribute_tables(frames)
    for col in table.columns:
        if not pd.api.types.is_numeric_dtype(table[col]):  # object or pandas' string dtype (pandas >= 3)
            table[col] = table[col].str.strip()
    table = select_attributes(table, attributes, "camels_us", where=f" in {folder}")
    return select_basins(table, basins, "camels_us", where=f"in {folder}")


@register_reader("camels_us")
def read_camels_us(
    path: str | Path,
    *,
    basins: str | Path | Sequence[str] | None = None,
    forcing: str = "daymet",
    attributes: Sequence[str] | bool | None = None,
    streamflow: bool = True,
    progress: bool | None = None,
    **options,
) -> xr.Dataset:
    """Read CAMELS-US forcings, streamflow and attributes into one Dataset.

    Parameters
    ----------
    path : str or Path
        Root of the CAMELS-US copy.
    basins : list of str, str or Path, optional
        Gauge ids, or a text file with one id per line (relative paths are taken under ``path``). Default:
        ``basins.txt`` in the root if present, else every basin with a forcing file.
    forcing : str
        Forcing source folder under ``basin_mean_forcing``: ``daymet`` (default), ``maurer``,
        ``maurer_extended`` or ``nldas``.
    attributes : list of str, bool or None
        Static attributes to add on ``(basin,)``: ``None``/``True`` all numeric ones, ``False`` none, or a list
        (string attributes allowed when named).
    streamflow : bool
        Whether to read ``usgs_streamflow`` (``streamflow`` in ft3 s-1 and its flag ``streamflow_qc``).
    progress : bool, optional
        Progress bar over basins (``None``: the ``HYDROML_PROGRESS`` setting).
    **options
        Unknown options are an error.

    Returns
    -------
    xarray.Dataset
        Dynamic variables on ``(basin, time)`` (outer join of all dates, NaN where a basin has no data), statics
        on ``(basin,)``, ``area_km2`` from the forcing header, ``lat`` (basin-mean latitude) and ``elevation`` (m).

    Examples
    --------
    >>> ds = read_camels_us("camels_us_4basins", forcing="daymet")  # doctest: +SKIP
    >>> ds.prcp.dims  # doctest: +SKIP
    ('basin', 'time')
    """
    if options:
        raise DataError(f"camels_us: unknown reader options {sorted(options)}")
    root = Path(path)
    forcing_dir = root / "basin_mean_forcing" / forcing
    if not forcing_dir.is_dir():
        found = sorted(p.name for p in (root / "basin_mean_forcing").glob("*") if p.is_dir())
        raise DataError(
            f"camels_us: forcing source folder {str(forcing_dir)!r} not found; available: {found}"
        )
    forcing_files = _index(forcing_dir, "*_lump_*_forcing_leap.txt")
    ids = _parse_basins(basins, root)
    if ids is None:
        ids = sorted(forcing_files)
    absent = [b for b in ids if b not in forcing_files]
    if absent:
        raise DataError(f"camels_us: no {forcing} forcing file for basins {absent} under {forcing_dir}")
    if not ids:
        raise DataError(f"camels_us: no basins selected under {root}")
    flow_files = _index(root / "usgs_streamflow", "*_streamflow_qc.txt") if streamflow else {}
    if streamflow:
        absent = [b for b in ids if b not in flow_files]
        if absent:
            raise DataError(
                f"camels_us: no streamflow file for basins {absent} under {root / 'usgs_streamflow'}"
            )

    frames, headers, units = [], [], {}
    for b in tqdm(ids, progress=progress, desc="CAMELS-US basins", leave=False):
        frame, header, u = read_forcing_file(forcing_files[b])
        units.update(u)
        if streamflow:
            frame = frame.join(read_streamflow_file(flow_files[b]), how="outer")
        frames.append(frame)
        headers.append(header)
    time = frames[0].index
    for f in frames[1:]:
        time = time.union(f.index)
    frames = [f.reindex(time) for f in frames]
    data_vars = {}
    for col in frames[0].columns:
        if col == "streamflow_qc":
            arr = np.stack([f[col].fillna("").to_numpy(dtype=str) for f in frames])
        else:
            arr = np.stack([f[col].to_numpy(dtype="float64") for f in frames])
        data_vars[col] = (("basin", "time"), arr)
    ds = xr.Dataset(
        data_vars, coords={"basin": np.array(ids, dtype=str), "time": time.values.astype("datetime64[ns]")}
    )
    for name, u in units.items():
        if name in ds:
            ds[name].attrs["units"] = u
    if streamflow:
        ds["streamflow"].attrs.update(units="ft3 s-1", long_name="observed streamflow (USGS)")
        ds["streamflow_qc"].attrs["long_name"] = "USGS quality flag (A approved, A:e estimated, M missing)"
    ds["area_km2"] = ("basin", np.array([h["area_km2"] for h in headers]), {"units": "km2"})
    ds["elevation"] = ("basin", np.array([h["elevation"] for h in headers]), {"units": "m"})
    ds = ds.assign_coords(lat=("basin", np.array([h["lat"] for h in headers]), {"units": "degrees_north"}))
    if attributes is not False:
        table = read_attributes(root, ids, None if attributes in (None, True) else attributes)
        add_statics(ds, table)
    ds.attrs.update(source="CAMELS-US", forcing=forcing, source_path=str(root))
    log.info("camels_us: read %d basins, %d days (%s forcing)", len(ids), ds.sizes["time"], forcing)
    return ds
