"""Canonical variables and unit conversion.

hydroml names every variable by its CF short name (``pr``, ``tas``, ``evspsbl``, ``q``...) in one set of units,
listed in ``data_catalog/variables.yaml`` (see :func:`variables_table`). :func:`convert_units` converts one
:class:`xarray.DataArray` into the canonical units of a variable; :func:`to_canonical` applies a catalog
entry's variable mapping (source name, source units, optional scale, offset and missing-value sentinels) to a
whole dataset.

Units are parsed into powers of metre, kilogram, second and month, so any product of known symbols converts
(``kg m-2 s-1``, ``mm/day``, ``m**3 s**-1``, ``ft3/s``, ``MJ m-2 d-1``, ``J/cm2``, ``0.1 mm``...). Two physical
rules go beyond dimensional analysis:

- water mass per area is depth: 1 kg m-2 = 1 mm (density of water 1000 kg m-3);
- an amount without a time unit (``mm``, ``m``, ``J m-2``) is an amount *per time step* of the data (an ERA5
  daily accumulation in ``m`` is metres per day; a monthly total in ``mm`` is mm per month).

Months have their true lengths (from each time stamp, any cftime calendar). Discharge converts between
``m3 s-1`` and ``mm/day`` given the basin area in km2. An unknown unit raises :class:`~hydroml.exceptions.UnitError`
naming the variable, the source and the unit found; values are never clipped (a small negative potential
evaporation stays negative).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from hydroml._io import load_yaml
from hydroml.exceptions import CatalogError, DataError, UnitError

log = logging.getLogger("hydroml.data")

__all__ = [
    "Variable",
    "variables_table",
    "get_variable",
    "canonical_units",
    "parse_units",
    "convert_units",
    "to_canonical",
    "infer_time_step",
    "validate_mapping",
    "check_range",
    "MAPPING_KEYS",
]

#: Keys allowed in one variable's mapping of a catalog entry.
MAPPING_KEYS = ("source", "units", "scale", "offset", "missing", "description")

_SECONDS_PER_DAY = 86400.0
_WATER_DENSITY = 1000.0  # kg m-3


# --------------------------------------------------------------------------------------------------------
# the variables table
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variable:
    """One canonical variable of ``data_catalog/variables.yaml``.

    Attributes
    ----------
    name : str
        CF short name, e.g. ``"pr"``.
    standard_name, long_name : str
        CF standard name and a readable name.
    units : str
        Canonical units of daily (or sub-daily) data.
    monthly_units : str
        Canonical units of monthly data (``mm/month`` for water fluxes, else ``units``).
    kind : str
        Unit family: ``water_flux``, ``temperature``, ``energy_flux``, ``discharge``...
    cell_method : str or None
        ``"sum"`` (fluxes) or ``"mean"`` (states) for aggregation in time; None for static variables.
    static : bool
        Whether the variable is time-invariant (basin attributes).
    valid_range : (float, float) or None
        Physically possible values in ``units`` (monthly water fluxes: 31 x these bounds); see
        :func:`check_range`.
    """

    name: str
    standard_name: str
    long_name: str
    units: str
    monthly_units: str
    kind: str
    cell_method: str | None
    static: bool = False
    valid_range: tuple[float, float] | None = None


_TABLE_KEYS = {
    "standard_name",
    "long_name",
    "units",
    "monthly_units",
    "kind",
    "cell_method",
    "static",
    "valid_range",
}


def _catalog_dir_files():
    """The folder holding the packaged catalog files (importlib.resources, else the repository folder)."""
    from hydroml.catalog import builtin_catalog_dir

    return builtin_catalog_dir()


@functools.lru_cache(maxsize=1)
def variables_table() -> dict[str, Variable]:
    """The canonical variables, read from ``data_catalog/variables.yaml``.

    Returns
    -------
    dict of str to Variable
        Keyed by CF short name.

    Examples
    --------
    >>> from hydroml.data.variables import variables_table
    >>> variables_table()["pr"].units
    'mm/day'
    """

    path = _catalog_dir_files() / "variables.yaml"
    raw = load_yaml(path.read_text())
    if not isinstance(raw, dict) or set(raw) != {"variables"}:
        raise CatalogError(f"{path}: expected one top-level key 'variables'")
    table = {}
    for name, spec in raw["variables"].items():
        unknown = set(spec) - _TABLE_KEYS
        if unknown:
            raise CatalogError(
                f"{path}: variable {name!r} has unknown key(s) {sorted(unknown)}; valid keys: {sorted(_TABLE_KEYS)}"
            )
        static = bool(spec.get("static", False))
        vr = spec.get("valid_range")
        if vr is not None and not (
            isinstance(vr, list)
            and len(vr) == 2
            and all(isinstance(v, int | float) for v in vr)
            and vr[0] < vr[1]
        ):
            raise CatalogError(
                f"{path}: variable {name!r}: valid_range must be [min, max] with min < max, found {vr!r}"
            )
        table[name] = Variable(
            name=name,
            standard_name=spec["standard_name"],
            long_name=spec["long_name"],
            units=str(spec["units"]),
            monthly_units=str(spec.get("monthly_units", spec["units"])),
            kind=spec["kind"],
            cell_method=None if static else spec.get("cell_method", "mean"),
            static=static,
            valid_range=(float(vr[0]), float(vr[1])) if vr is not None else None,
        )
    return table


def get_variable(name: str) -> Variable:
    """Return the canonical variable ``name``.

    Raises
    ------
    UnitError
        If ``name`` is not in the table; the message lists the canonical names.
    """
    table = variables_table()
    if name not in table:
        raise UnitError(f"{name!r} is not a canonical variable; known: {', '.join(sorted(table))}")
    return table[name]


def canonical_units(name: str, time_step: str | None = "daily") -> str:
    """Canonical units of variable ``name`` for data at ``time_step`` (``"daily"`` or ``"monthly"``)."""
    var = get_variable(name)
    return var.monthly_units if time_step == "monthly" else var.units


# --------------------------------------------------------------------------------------------------------
# unit parsing
# --------------------------------------------------------------------------------------------------------
# symbol -> (factor to SI, {dimension: exponent}); dimensions: L (m), M (kg), T (s), MON (calendar month)
_L, _M, _T, _MON = "L", "M", "T", "MON"
_SYMBOLS: dict[str, tuple[float, dict[str, int]]] = {
    "m": (1.0, {_L: 1}),
    "mm": (1e-3, {_L: 1}),
    "cm": (1e-2, {_L: 1}),
    "km": (1e3, {_L: 1}),
    "ft": (0.3048, {_L: 1}),
    "in": (0.0254, {_L: 1}),
    "inch": (0.0254, {_L: 1}),
    "l": (1e-3, {_L: 3}),
    "kg": (1.0, {_M: 1}),
    "g": (1e-3, {_M: 1}),
    "s": (1.0, {_T: 1}),
    "sec": (1.0, {_T: 1}),
    "min": (60.0, {_T: 1}),
    "h": (3600.0, {_T: 1}),
    "hr": (3600.0, {_T: 1}),
    "hour": (3600.0, {_T: 1}),
    "d": (_SECONDS_PER_DAY, {_T: 1}),
    "day": (_SECONDS_PER_DAY, {_T: 1}),
    "month": (1.0, {_MON: 1}),
    "mon": (1.0, {_MON: 1}),
    "j": (1.0, {_M: 1, _L: 2, _T: -2}),
    "kj": (1e3, {_M: 1, _L: 2, _T: -2}),
    "mj": (1e6, {_M: 1, _L: 2, _T: -2}),
    "w": (1.0, {_M: 1, _L: 2, _T: -3}),
    "kw": (1e3, {_M: 1, _L: 2, _T: -3}),
    "pa": (1.0, {_M: 1, _L: -1, _T: -2}),
    "hpa": (100.0, {_M: 1, _L: -1, _T: -2}),
    "kpa": (1000.0, {_M: 1, _L: -1, _T: -2}),
    "mbar": (100.0, {_M: 1, _L: -1, _T: -2}),
    "%": (0.01, {}),
    "percent": (0.01, {}),
    "1": (1.0, {}),
    "fraction": (1.0, {}),
}
# whole-string aliases (after normalisation), expanded before tokenising
_ALIASES = {
    "cfs": "ft3 s-1",
    "cms": "m3 s-1",
    "cumecs": "m3 s-1",
    "m/day": "m d-1",
    "degree": None,  # angle: not convertible here
}
_TEMPERATURE = {
    "degc": "C",
    "deg_c": "C",
    "deg c": "C",
    "°c": "C",
    "c": "C",
    "celsius": "C",
    "degrees_celsius": "C",
    "degree_celsius": "C",
    "degrees c": "C",
    "k": "K",
    "kelvin": "K",
    "degk": "K",
    "degf": "F",
    "°f": "F",
    "f": "F",
    "fahrenheit": "F",
    "degrees_fahrenheit": "F",
}
_TOKEN = re.compile(r"^([a-z%°]+|1)(-?\d+)?$")
_PREFIX = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s+(.+)$")


@dataclass(frozen=True)
class _Unit:
    text: str
    factor: float  # to SI (and calendar months counted as 1)
    dims: tuple[tuple[str, int], ...]  # sorted non-zero exponents
    temperature: str | None = None  # "C", "K", "F" for temperatures

    def dims_dict(self) -> dict[str, int]:
        return dict(self.dims)


def _normalise(units: str) -> str:
    u = str(units).strip().lower()
    u = u.replace("**", "").replace("^", "").replace("·", " ").replace("*", " ")
    u = u.translate(str.maketrans({"³": "3", "²": "2", "¹": "1", "⁻": "-"}))
    u = re.sub(r"\s+", " ", u)
    return u


def parse_units(units: str) -> _Unit:
    """Parse a units string into a factor to SI and powers of length, mass, time and calendar month.

    Parameters
    ----------
    units : str
        E.g. ``"kg m-2 s-1"``, ``"mm/day"``, ``"m**3 s**-1"``, ``"0.1 mm"``, ``"degC"``.

    Returns
    -------
    _Unit
        Internal representation (``factor``, ``dims``, ``temperature``).

    Raises
    ------
    UnitError
        If a symbol is unknown.
    """
    text = str(units)
    u = _normalise(text)
    scale = 1.0
    m = _PREFIX.match(u)
    if m:  # "0.1 mm", "10 m": a numeric multiplier
        scale, u = float(m.group(1)), m.group(2)
    if u in _TEMPERATURE:
        return _Unit(text, scale, (), temperature=_TEMPERATURE[u])
    if u in _ALIASES:
        if _ALIASES[u] is None:
            raise UnitError(f"unit {text!r} cannot be converted")
        u = _ALIASES[u]
    if u in ("", "-", "none"):
        raise UnitError(f"unit {text!r} is empty")
    parts = u.split("/")
    tokens: list[tuple[str, int]] = []
    for i, part in enumerate(parts):
        for tok in part.split():
            mt = _TOKEN.match(tok)
            if not mt:
                raise UnitError(f"cannot parse unit {text!r} (token {tok!r})")
            sym, exp = mt.group(1), int(mt.group(2) or 1)
            if sym == "1" and mt.group(2):
                raise UnitError(f"cannot parse unit {text!r} (token {tok!r})")
            tokens.append((sym, -exp if i > 0 else exp))
    factor = scale
    dims: dict[str, int] = {}
    for sym, exp in tokens:
        if sym not in _SYMBOLS:
            raise UnitError(f"unknown unit symbol {sym!r} in {text!r}")
        f, d = _SYMBOLS[sym]
        factor *= f**exp
        for k, v in d.items():
            dims[k] = dims.get(k, 0) + v * exp
    return _Unit(text, factor, tuple(sorted((k, v) for k, v in dims.items() if v)))


# --------------------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------------------
def infer_time_step(time: xr.DataArray | xr.Dataset | None) -> str | None:
    """Infer the time step of a time coordinate: ``"daily"``, ``"monthly"``, ``"hourly"``, or None.

    Parameters
    ----------
    time : DataArray or Dataset
        A ``time`` coordinate (or a dataset that has one). Works with numpy datetimes and cftime dates.

    Returns
    -------
    str or None
        None when there is no time, or one step only.
    """
    if isinstance(time, xr.Dataset) or (isinstance(time, xr.DataArray) and time.name != "time"):
        time = time.coords.get("time")
    if time is None or time.size < 2:
        return None
    values = time.values
    if values.dtype.kind == "M":
        steps = np.diff(values).astype("timedelta64[s]").astype(float)
    else:  # cftime objects
        steps = np.array([(b - a).total_seconds() for a, b in zip(values[:-1], values[1:])], dtype=float)
    step = float(np.median(steps))
    if 27 * _SECONDS_PER_DAY <= step <= 32 * _SECONDS_PER_DAY:
        return "monthly"
    if step == _SECONDS_PER_DAY:
        return "daily"
    if step == 3600.0:
        return "hourly"
    return f"{step:g}s"


def _step_seconds(time_step: str | None, da: xr.DataArray) -> float | xr.DataArray:
    """Length of one time step in seconds: a number, or per time stamp for months."""
    if time_step == "monthly":
        return _month_seconds(da)
    if time_step == "daily":
        return _SECONDS_PER_DAY
    if time_step == "hourly":
        return 3600.0
    if time_step and time_step.endswith("s"):
        try:
            return float(time_step[:-1])
        except ValueError:
            pass
    raise UnitError(f"amounts per time step need a known time step; found {time_step!r}")


def _month_seconds(da: xr.DataArray) -> xr.DataArray:
    if "time" not in da.coords:
        raise UnitError(f"variable {da.name!r}: converting per-month units needs a time coordinate")
    return da["time"].dt.days_in_month.astype("float64") * _SECONDS_PER_DAY


def _water_depth(dims: dict[str, int]) -> tuple[dict[str, int], float]:
    """Turn water mass per area (kg m-2) into depth (m) with the density of water."""
    if dims.get(_M, 0) == 1 and dims.get(_L, 0) <= -2:
        dims = dict(dims)
        dims[_M] = 0
        dims[_L] = dims[_L] + 3
        return {k: v for k, v in dims.items() if v}, 1.0 / _WATER_DENSITY
    return dims, 1.0


def convert_units(
    da: xr.DataArray,
    from_units: str,
    to_units: str,
    *,
    kind: str | None = None,
    time_step: str | None = None,
    area_km2: float | xr.DataArray | None = None,
    where: str = "",
) -> xr.DataArray:
    """Convert ``da`` from ``from_units`` into ``to_units``.

    Parameters
    ----------
    da : xarray.DataArray
        Values (lazy dask arrays stay lazy).
    from_units, to_units : str
        Units strings (see :func:`parse_units`).
    kind : str, optional
        Unit family of the target (``water_flux``, ``water_amount``, ``discharge``...). Water fluxes and amounts
        accept mass per area (1 kg m-2 = 1 mm).
    time_step : str, optional
        ``"daily"``, ``"monthly"``, ``"hourly"`` or ``"<n>s"``: the step of amounts per time step. Inferred from
        ``da.time`` when None.
    area_km2 : float or DataArray, optional
        Basin area for conversions between discharge (m3 s-1) and depth (mm/day).
    where : str
        Context for error messages, e.g. ``"variable 'pr' (source 'tp') in era5.nc"``.

    Returns
    -------
    xarray.DataArray
        Converted values with ``units`` set to ``to_units``. Signs are kept (no clipping).

    Raises
    ------
    UnitError
        Unknown or incompatible units, or a missing area / time step.

    Examples
    --------
    >>> import xarray as xr
    >>> round(convert_units(xr.DataArray([1e-5]), "kg m-2 s-1", "mm/day").item(), 6)
    0.864
    >>> round(convert_units(xr.DataArray([300.0]), "K", "degC").item(), 2)
    26.85
    """
    ctx = f" for {where}" if where else ""
    try:
        src = parse_units(from_units)
        dst = parse_units(to_units)
    except UnitError as err:
        raise UnitError(f"{err}{ctx}") from None
    if src.temperature or dst.temperature:
        if not (src.temperature and dst.temperature):
            raise UnitError(f"cannot convert {from_units!r} into {to_units!r}{ctx}")
        return _convert_temperature(da, src, dst).assign_attrs(units=to_units)

    s_dims, d_dims = src.dims_dict(), dst.dims_dict()
    factor: float | xr.DataArray = src.factor / dst.factor
    if kind in ("water_flux", "water_amount", "discharge", None) and s_dims.get(_M, 0) != d_dims.get(_M, 0):
        s_dims, f1 = _water_depth(s_dims)
        d_dims, f2 = _water_depth(d_dims)
        factor = factor * f1 / f2

    # calendar months -> seconds of each month (equal powers on both sides cancel exactly)
    if s_dims.get(_MON) and s_dims.get(_MON) == d_dims.get(_MON):
        s_dims.pop(_MON)
        d_dims.pop(_MON)
    if s_dims.get(_MON) or d_dims.get(_MON):
        month_s = _month_seconds(da)
        for dims, sign in ((s_dims, 1), (d_dims, -1)):
            e = dims.pop(_MON, 0)
            if e:
                factor = factor * month_s ** (sign * e)
                dims[_T] = dims.get(_T, 0) + e

    def _clean(d):
        return {k: v for k, v in d.items() if v}

    s_dims, d_dims = _clean(s_dims), _clean(d_dims)
    # discharge (L3 T-1) <-> depth rate (L T-1) with the basin area
    if s_dims.get(_L) != d_dims.get(_L) and abs(s_dims.get(_L, 0) - d_dims.get(_L, 0)) == 2:
        if area_km2 is None:
            raise UnitError(
                f"converting {from_units!r} into {to_units!r}{ctx} needs the basin area (area_km2), "
                "which is not available"
            )
        area_m2 = area_km2 * 1e6
        if s_dims[_L] > d_dims[_L]:
            factor = factor / area_m2
            s_dims[_L] -= 2
        else:
            factor = factor * area_m2
            s_dims[_L] += 2
        s_dims = _clean(s_dims)
    # amounts per time step (no time unit) -> rates
    if s_dims.get(_T, 0) - d_dims.get(_T, 0) == 1:
        factor = factor / _step_seconds(time_step or infer_time_step(da), da)
        s_dims[_T] = s_dims.get(_T, 0) - 1
        s_dims = _clean(s_dims)
    elif d_dims.get(_T, 0) - s_dims.get(_T, 0) == 1:  # rate -> amount per step
        factor = factor * _step_seconds(time_step or infer_time_step(da), da)
        s_dims[_T] = s_dims.get(_T, 0) + 1
        s_dims = _clean(s_dims)
    if s_dims != d_dims:
        raise UnitError(f"cannot convert {from_units!r} into {to_units!r}{ctx}: dimensions differ")
    attrs = dict(da.attrs)
    if isinstance(factor, float) and factor == 1.0:
        out = da.copy()
    else:
        out = da * factor
        if isinstance(factor, xr.DataArray):  # keep the dtype of float32 inputs
            out = out.astype(da.dtype) if da.dtype.kind == "f" else out
    attrs["units"] = to_units
    return out.assign_attrs(attrs)


def _convert_temperature(da: xr.DataArray, src: _Unit, dst: _Unit) -> xr.DataArray:
    x = da * src.factor if src.factor != 1.0 else da
    if src.temperature == "K":
        c = x - 273.15
    elif src.temperature == "F":
        c = (x - 32.0) * (5.0 / 9.0)
    else:
        c = x
    if dst.temperature == "K":
        out = c + 273.15
    elif dst.temperature == "F":
        out = c * (9.0 / 5.0) + 32.0
    else:
        out = c
    if dst.factor != 1.0:
        out = out / dst.factor
    return out.assign_attrs(da.attrs)


# --------------------------------------------------------------------------------------------------------
# applying a catalog entry's variable mapping
# --------------------------------------------------------------------------------------------------------
def validate_mapping(mapping: Mapping[str, Any], source: str) -> dict[str, dict]:
    """Check a catalog variable mapping and return it in its long form ``{canonical: {"source": ..., ...}}``.

    Raises
    ------
    CatalogError
        A key that is not a canonical variable, or a spec with unknown keys (messages list the valid ones).
    """
    table = variables_table()
    out = {}
    for name, spec in (mapping or {}).items():
        if name not in table:
            raise CatalogError(
                f"{source}: variable mapping names {name!r}, which is not a canonical variable; "
                f"known: {', '.join(sorted(table))}"
            )
        if spec is None:
            spec = {}
        elif isinstance(spec, str):
            spec = {"source": spec}
        elif not isinstance(spec, Mapping):
            raise CatalogError(f"{source}: mapping of {name!r} must be a source name or a mapping")
        unknown = set(spec) - set(MAPPING_KEYS)
        if unknown:
            raise CatalogError(
                f"{source}: mapping of {name!r} has unknown key(s) {sorted(unknown)}; "
                f"valid keys: {', '.join(MAPPING_KEYS)}"
            )
        out[name] = {"source": name, **spec}
    return out


def _apply_missing(da: xr.DataArray, missing, where: str = "") -> xr.DataArray:
    if missing is None:
        return da
    values = missing if isinstance(missing, list | tuple) else [missing]
    if da.dtype.kind not in "fiu":
        return da
    mask = None
    for v in values:
        m = da == np.asarray(v).astype(da.dtype) if da.dtype.kind == "f" else da == v
        mask = m if mask is None else (mask | m)
    if mask is None:
        return da
    n = int(mask.sum())
    if n:
        log.info(
            "%s: %d value(s) equal to the declared missing-value sentinel(s) %s set to NaN", where, n, values
        )
    return da.where(~mask).assign_attrs(da.attrs)


def _label(da: xr.DataArray, pos: tuple[int, ...]) -> str:
    """``time 2001-03-04, basin '01013500'`` for the array position ``pos`` of ``da``."""
    parts = []
    for dim, i in zip(da.dims, pos):
        if dim in da.coords and da[dim].ndim == 1:
            v = da[dim].values[i]
            if isinstance(v, np.datetime64):
                text = str(np.datetime_as_string(v, unit="s")).replace("T00:00:00", "")
            else:
                text = repr(v.item() if isinstance(v, np.generic) else v)
                text = text.replace(" 00:00:00", "")
            parts.append(f"{dim} {text}")
        else:
            parts.append(f"{dim} index {i}")
    return ", ".join(parts)


def check_range(da: xr.DataArray, name: str, *, time_step: str | None = None, where: str = "") -> None:
    """Refuse values outside the physical range of canonical variable ``name`` (``valid_range`` of the table).

    ``da`` must be in the canonical units of ``name``. NaN is allowed (missing); infinities are not. Monthly
    water fluxes (mm/month) are checked against 31 times the daily bounds. The bounds are widened by 1e-6 of
    the range's width for rounding (an ERA5 precipitation of -1e-9 m from its accumulation arithmetic passes).

    Parameters
    ----------
    da : xarray.DataArray
        Values in canonical units.
    name : str
        Canonical variable name.
    time_step : str, optional
        ``"monthly"`` for monthly data.
    where : str
        Context for the message (variable, source, file).

    Raises
    ------
    DataError
        Naming the variable, ``where``, the count of bad values, their range, the first position (time stamp,
        basin) and how to declare a missing-value sentinel.
    """
    var = get_variable(name)
    if var.valid_range is None or da.dtype.kind not in "fiu" or da.size == 0:
        return
    lo, hi = var.valid_range
    units = var.units
    if time_step == "monthly" and not var.static and var.monthly_units != var.units:
        lo, hi, units = lo * 31, hi * 31, var.monthly_units
    values = np.asarray(da.values)
    tol = 1e-6 * (hi - lo)
    with np.errstate(invalid="ignore"):
        bad = (values < lo - tol) | (values > hi + tol)
    n = int(bad.sum())
    if not n:
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    found = values[bad]
    distinct = np.unique(found)
    same = (
        f"; all {n} equal {distinct[0]:g}: a missing-value sentinel? declare it in the catalog entry "
        f"(the variable mapping's 'missing: {distinct[0]:g}' or the reader's missing_values) to read it as NaN"
        if distinct.size == 1 and np.isfinite(distinct[0])
        else "; if they mark missing data, declare the sentinel in the catalog entry (the variable mapping's "
        "'missing' or the reader's missing_values)"
    )
    raise DataError(
        f"{where or name}: {n} value(s) of {name!r} outside its physical range [{lo:g}, {hi:g}] {units} "
        f"(found {float(np.min(found)):g}..{float(np.max(found)):g}; first at {_label(da, first)}){same}"
    )


def to_canonical(
    ds: xr.Dataset,
    mapping: Mapping[str, Any],
    *,
    source: str = "dataset",
    time_step: str | None = None,
    area_km2: float | xr.DataArray | None = None,
    passthrough: list[str] | str | None = None,
    check_ranges: bool = True,
) -> xr.Dataset:
    """Rename and convert a dataset's variables into canonical names and units.

    Parameters
    ----------
    ds : xarray.Dataset
        Data with source names (as returned by a reader).
    mapping : mapping
        Canonical name -> spec. A spec is a source variable name, or a mapping with keys ``source`` (default:
        the canonical name), ``units`` (the source units; default: the variable's ``units`` attribute),
        ``scale`` and ``offset`` (applied first: ``value * scale + offset``), ``missing`` (sentinel value(s)
        marking missing data, e.g. ``-1.2345``) and ``description``.
    source : str
        Name of the data source (catalog entry, file) for messages and the ``source`` attribute.
    time_step : str, optional
        ``"daily"``, ``"monthly"``...; inferred from ``ds.time`` when None. Monthly water fluxes are returned in
        mm/month, daily ones in mm/day.
    area_km2 : float or DataArray, optional
        Basin area for discharge <-> depth conversions; defaults to the converted ``area_km2`` variable when the
        mapping provides one.
    passthrough : list of str or "*", optional
        Source variables kept unchanged (e.g. basin attributes without canonical names); ``"*"`` keeps every
        unmapped variable.
    check_ranges : bool
        Refuse converted values outside the variable's physical range (:func:`check_range`): a sentinel such
        as ``-999`` that the mapping does not declare as ``missing``, precipitation in the wrong units...

    Returns
    -------
    xarray.Dataset
        Only the mapped variables (plus ``passthrough``), canonical names, units and CF attributes.

    Raises
    ------
    DataError
        A source variable is missing (the message lists those available), or values are outside the physical
        range of their variable (the message names the variable, the source, the count and the first time
        stamp).
    UnitError
        A unit is missing, unknown or not convertible.
    CatalogError
        The mapping itself is invalid (unknown canonical name or spec key).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset({"tp": ("time", np.array([1e-5, 2e-5]), {"units": "kg m-2 s-1"})},
    ...                 coords={"time": pd.date_range("2000-01-01", periods=2)})
    >>> to_canonical(ds, {"pr": "tp"})["pr"].values.round(3)
    array([0.864, 1.728])
    """
    spec = validate_mapping(mapping, source)
    table = variables_table()
    found = infer_time_step(ds)
    if time_step and found and found != time_step:
        raise DataError(
            f"{source}: expected {time_step} data, found time step {found!r} (median spacing of 'time'); "
            "fix the catalog entry's time_step"
        )
    step = time_step or found
    out_vars: dict[str, xr.DataArray] = {}
    # statics first, so that area_km2 is available for discharge conversions
    order = sorted(spec, key=lambda n: (not table[n].static, n))
    for name in order:
        s = spec[name]
        src_name = s["source"]
        where = f"variable {name!r} (source {src_name!r}) in {source}"
        if src_name not in ds.variables:
            raise DataError(
                f"{source}: variable {src_name!r} (for {name!r}) not found; available: "
                f"{', '.join(sorted(map(str, ds.data_vars))) or 'none'}"
            )
        da = ds[src_name]
        units = s.get("units") or da.attrs.get("units")
        if units is None or str(units).strip() == "":
            raise UnitError(
                f"{where}: no units (the file has no 'units' attribute and the mapping gives none); "
                f"expected units convertible to {table[name].units!r}"
            )
        da = _apply_missing(da, s.get("missing"), where)
        if s.get("scale") is not None:
            da = (da * float(s["scale"])).assign_attrs(da.attrs)
        if s.get("offset") is not None:
            da = (da + float(s["offset"])).assign_attrs(da.attrs)
        var = table[name]
        target = var.monthly_units if (step == "monthly" and not var.static) else var.units
        area = area_km2 if area_km2 is not None else out_vars.get("area_km2")
        da = convert_units(da, str(units), target, kind=var.kind, time_step=step, area_km2=area, where=where)
        if check_ranges:
            check_range(da, name, time_step=step, where=where)
        attrs = {
            "standard_name": var.standard_name,
            "long_name": var.long_name,
            "units": target,
            "source_variable": src_name,
            "source_units": str(units),
        }
        if var.cell_method and "time" in da.dims:
            attrs["cell_methods"] = f"time: {var.cell_method}"
        if s.get("description"):
            attrs["description"] = s["description"]
        out_vars[name] = da.rename(name).assign_attrs(attrs)
    keep: list[str] = []
    if passthrough == "*":
        used = {s["source"] for s in spec.values()}
        keep = [str(v) for v in ds.data_vars if v not in used and v not in out_vars]
    elif passthrough:
        missing = [p for p in passthrough if p not in ds.variables]
        if missing:
            raise DataError(
                f"{source}: passthrough variable(s) {missing} not found; available: "
                f"{', '.join(sorted(map(str, ds.data_vars)))}"
            )
        keep = [p for p in passthrough if p not in out_vars]
    data = {**out_vars, **{k: ds[k] for k in keep}}
    out = xr.Dataset(data, attrs=dict(ds.attrs))
    out.attrs["source"] = source
    log.debug("to_canonical: %s -> %s", source, sorted(data))
    return out
