"""Aggregation in time: daily -> monthly, respecting cell methods and true month lengths.

Fluxes (``cell_method: sum`` in ``data_catalog/variables.yaml``: precipitation, evaporation, discharge depth)
become monthly totals, states and temperatures (``mean``) monthly means. A month with fewer than
``min_valid_days`` valid days is NaN; a monthly total from an incomplete but accepted month is the mean of its
valid days times the true number of days in the month (any cftime calendar: a ``360_day`` month has 30 days).
Dask-backed inputs stay lazy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from hydroml.data.variables import convert_units, infer_time_step, variables_table
from hydroml.exceptions import DataError, UnitError

log = logging.getLogger("hydroml.data")

__all__ = ["to_monthly", "cell_method_of"]


def cell_method_of(da: xr.DataArray, name: str | None = None) -> str:
    """How a daily variable aggregates in time: ``"sum"`` or ``"mean"``.

    Looked up in the canonical variables table by name, then in the variable's CF ``cell_methods`` attribute
    (``time: sum`` -> sum; ``time: mean``/``minimum``/``maximum``/``point`` -> mean).

    Raises
    ------
    DataError
        If neither source tells.
    """
    name = str(name if name is not None else da.name)
    table = variables_table()
    if name in table and table[name].cell_method:
        return table[name].cell_method
    cm = str(da.attrs.get("cell_methods", "")).lower()
    if "time:" in cm:
        what = cm.split("time:")[-1].split()[0] if cm.split("time:")[-1].split() else ""
        if what.startswith("sum"):
            return "sum"
        if what.startswith(("mean", "minimum", "maximum", "point", "median")):
            return "mean"
    raise DataError(
        f"variable {name!r}: cannot tell how to aggregate it in time (not a canonical variable and no "
        "'cell_methods' attribute); pass cell_methods={name: 'sum' or 'mean'}"
    )


def to_monthly(
    data: xr.Dataset | xr.DataArray,
    *,
    min_valid_days: int | None = None,
    cell_methods: Mapping[str, str] | None = None,
) -> xr.Dataset | xr.DataArray:
    """Aggregate daily data into calendar months.

    Parameters
    ----------
    data : xarray.Dataset or DataArray
        Daily data with a ``time`` dimension (numpy or cftime dates). Variables without ``time`` pass through.
    min_valid_days : int, optional
        Minimum number of valid (non-NaN) days for a month to get a value; ``None`` requires every day of the
        month (so partial months at the ends of a record are NaN).
    cell_methods : mapping, optional
        ``{variable: "sum" | "mean"}`` overriding the variables table and the ``cell_methods`` attributes.

    Returns
    -------
    xarray.Dataset or DataArray
        Monthly values labelled by the first day of each month. Sums of water fluxes are in ``mm/month``
        (converted from any rate unit, e.g. ``kg m-2 s-1``); means keep their units.

    Raises
    ------
    DataError
        If the data are not daily, or a variable's aggregation method is unknown.

    Notes
    -----
    For a flux with daily values :math:`x_d` of which the set :math:`V` is valid in a month of :math:`N` days,
    the monthly total is :math:`N \\cdot \\frac{1}{|V|} \\sum_{d \\in V} x_d` if :math:`|V| \\ge` ``min_valid_days``
    and NaN otherwise; with a complete month this is the plain sum.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.date_range("2001-01-01", "2001-03-31")
    >>> pr = xr.DataArray(np.ones(t.size), {"time": t}, name="pr", attrs={"units": "mm/day"})
    >>> to_monthly(pr).values
    array([31., 28., 31.])
    """
    if isinstance(data, xr.DataArray):
        name = str(data.name) if data.name is not None else "data"
        methods = dict(cell_methods or {})
        if name not in methods:
            methods[name] = cell_method_of(data, name)
        out = to_monthly(data.to_dataset(name=name), min_valid_days=min_valid_days, cell_methods=methods)
        return out[name].rename(data.name)
    ds = data
    if "time" not in ds.dims:
        raise DataError("to_monthly: the data have no 'time' dimension")
    step = infer_time_step(ds)
    if step not in ("daily", None):  # None: a single time step
        raise DataError(f"to_monthly: expected daily data, found time step {step!r}")
    if min_valid_days is not None and not (0 <= int(min_valid_days) <= 31):
        raise DataError(f"to_monthly: min_valid_days must be between 0 and 31, got {min_valid_days!r}")
    cell_methods = dict(cell_methods or {})
    months = _MonthIndex(ds["time"].values)
    out_vars = {}
    for name, da in ds.data_vars.items():
        if "time" not in da.dims:
            out_vars[name] = da
            continue
        method = cell_methods.get(str(name)) or cell_method_of(da, str(name))
        if method not in ("sum", "mean"):
            raise DataError(f"variable {name!r}: cell method must be 'sum' or 'mean', got {method!r}")
        total, count = months.sum_and_count(da)
        mean = total / count.where(count > 0)
        days = months.days
        need = days if min_valid_days is None else int(min_valid_days)
        attrs = dict(da.attrs)
        if method == "sum":
            units = da.attrs.get("units")
            try:
                rate = convert_units(mean, str(units), "mm/day", kind="water_flux", time_step="daily")
                value = rate * days
                attrs["units"] = "mm/month"
            except UnitError:
                log.warning(
                    "variable %r: units %r are not a water flux; its monthly sum is in %s times days",
                    name,
                    units,
                    units,
                )
                value = mean * days
        else:
            value = mean
        value = value.where(count >= need)
        attrs["cell_methods"] = f"time: {method}"
        attrs["min_valid_days"] = "all" if min_valid_days is None else int(min_valid_days)
        value = value.transpose(*da.dims).astype(da.dtype if da.dtype.kind == "f" else "float64")
        out_vars[name] = value.assign_attrs(attrs)
    out = xr.Dataset(out_vars, attrs=dict(ds.attrs))
    return out.reindex(time=months.full_labels())


class _MonthIndex:
    """Calendar months of a sorted daily time axis: labels, true lengths, and sums per month.

    Sums use :func:`numpy.add.reduceat` over contiguous months; dask arrays are rechunked along time to whole
    months and reduced block by block (one task per chunk, not per month), so they stay lazy and scale.
    """

    def __init__(self, values: np.ndarray):
        self.values = values
        if values.dtype.kind == "M":
            m = values.astype("datetime64[M]")
            self.key = m.astype("int64")
            starts = np.r_[0, np.flatnonzero(np.diff(self.key)) + 1]
            self.labels = m[starts].astype("datetime64[ns]")
            self.calendar = None
        else:  # cftime dates
            self.key = np.array([t.year * 12 + (t.month - 1) for t in values], dtype="int64")
            starts = np.r_[0, np.flatnonzero(np.diff(self.key)) + 1]
            first = values[0]
            self.calendar = first.calendar
            self.labels = np.array(
                [type(first)(t.year, t.month, 1, calendar=t.calendar) for t in values[starts]]
            )
        if np.any(np.diff(self.key) < 0):
            raise DataError("to_monthly: time must be sorted (increasing)")
        self.starts = starts
        self.days = xr.DataArray(self._days_in_month(), dims="time", coords={"time": self.labels})

    def _days_in_month(self) -> np.ndarray:
        if self.calendar is None:
            return pd.DatetimeIndex(self.labels).days_in_month.to_numpy()
        return np.array([t.daysinmonth for t in self.labels])

    def full_labels(self):
        """Every month from the first to the last (months absent from the data become NaN)."""
        if self.calendar is None:
            return pd.date_range(self.labels[0], self.labels[-1], freq="MS")
        return xr.date_range(
            self.labels[0].isoformat(),
            self.labels[-1].isoformat(),
            freq="MS",
            calendar=self.calendar,
            use_cftime=True,
        )

    def sum_and_count(self, da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
        da = da.transpose(..., "time")
        data = da.data
        other = {d: da[d] for d in da.dims if d != "time" and d in da.coords}
        dims = da.dims
        if hasattr(data, "dask"):
            total, count = self._dask_reduce(data)
        else:
            x = np.asarray(data, dtype="float64")
            valid = np.isfinite(x)
            total = np.add.reduceat(np.where(valid, x, 0.0), self.starts, axis=-1)
            count = np.add.reduceat(valid.astype("int32"), self.starts, axis=-1)
        coords = {**other, "time": self.labels}
        extra = {k: v for k, v in da.coords.items() if "time" not in v.dims and k not in coords}
        wrap = lambda a: xr.DataArray(a, dims=dims, coords={**coords, **extra})  # noqa: E731
        return wrap(total), wrap(count)

    def _dask_reduce(self, data):
        import dask.array as dsa

        # chunk boundaries along time at month starts, close to the existing chunk length
        target = max(int(np.median(data.chunks[-1])), 1)
        bounds = [0]
        for s in self.starts[1:]:
            if s - bounds[-1] >= target:
                bounds.append(int(s))
        bounds.append(len(self.key))
        time_chunks = tuple(np.diff(bounds).tolist())
        x = data.rechunk(data.chunks[:-1] + (time_chunks,))
        months_per_chunk = tuple(
            int(np.count_nonzero((self.starts >= a) & (self.starts < b)))
            for a, b in zip(bounds[:-1], bounds[1:])
        )
        key = self.key

        def reduce(block, kind, block_info=None):
            lo, hi = block_info[0]["array-location"][-1]
            k = key[lo:hi]
            st = np.r_[0, np.flatnonzero(np.diff(k)) + 1]
            valid = np.isfinite(block)
            if kind == "sum":
                return np.add.reduceat(np.where(valid, block, 0.0).astype("float64"), st, axis=-1)
            return np.add.reduceat(valid.astype("int32"), st, axis=-1)

        out_chunks = x.chunks[:-1] + (months_per_chunk,)
        total = dsa.map_blocks(reduce, x, "sum", chunks=out_chunks, dtype="float64")
        count = dsa.map_blocks(reduce, x, "count", chunks=out_chunks, dtype="int32")
        return total, count
