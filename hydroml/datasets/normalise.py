"""Normalisation statistics: fitted on the training period and basins only, saved as JSON, applied identically.

A :class:`Normaliser` holds, per variable, a mean and a standard deviation (and whether the variable is
log-transformed first, ``log(x + eps)``, as is common for discharge). It transforms numpy arrays, torch tensors
and xarray objects alike, and inverts the transform for predictions.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hydroml._io import write_json_atomic
from hydroml.exceptions import ConfigError, DataError

log = logging.getLogger("hydroml.datasets")

FORMAT_VERSION = 1
_KEYS = {"mean", "std", "log", "eps", "count"}


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def nan_moments(values: np.ndarray, chunk: int = 1 << 21) -> tuple[float, float, int]:
    """NaN-ignoring mean, standard deviation and count of an array, accumulated in float64 by blocks.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape, any float dtype, contiguous or a strided view (float32 stays float32 in memory; only a block
        of about ``chunk`` elements is promoted at a time, and views are not copied whole).
    chunk : int
        Elements per block.

    Returns
    -------
    mean, std, count : float, float, int
        ``nan`` for mean and std when no finite value exists. The standard deviation is the population one,
        from a second pass over the centred values (accurate for large offsets).
    """
    a = np.asarray(values)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    rows = max(1, chunk // max(1, int(np.prod(a.shape[1:]))))
    blocks = [a[i : i + rows] for i in range(0, a.shape[0], rows)]

    def finite(block):
        ok = np.isfinite(block)
        return (block, None) if ok.all() else (block[ok], ok)

    n = 0
    s = 0.0
    for block in blocks:
        b, _ = finite(block)
        n += b.size
        s += float(np.add.reduce(b, axis=None, dtype=np.float64))
    if n == 0:
        return math.nan, math.nan, 0
    mean = s / n
    ss = 0.0
    for block in blocks:
        b, _ = finite(block)
        d = np.subtract(b, mean, dtype=np.float64).ravel()  # a fresh contiguous block: ravel is a view
        ss += float(d @ d)
    return mean, math.sqrt(ss / n), n


class Normaliser:
    """Per-variable standardisation ``(f(x) - mean) / std`` with ``f = log(x + eps)`` or identity.

    Parameters
    ----------
    stats : dict, optional
        ``{name: {"mean": float, "std": float, "log": bool, "eps": float, "count": int}}``.

    Examples
    --------
    >>> import numpy as np
    >>> norm = Normaliser().fit_array("q_mm", np.array([0.5, 1.0, 4.0]), log=True)
    >>> x = norm.transform("q_mm", np.array([1.0]))
    >>> float(np.round(norm.inverse("q_mm", x)[0], 6))
    1.0
    """

    def __init__(self, stats: dict[str, dict[str, Any]] | None = None):
        self.stats: dict[str, dict[str, Any]] = {}
        for name, st in (stats or {}).items():
            unknown = set(st) - _KEYS
            if unknown or not {"mean", "std"} <= set(st):
                raise ConfigError(
                    f"normalisation statistics of {name!r}: expected keys {sorted(_KEYS)} "
                    f"(mean and std required), found {sorted(st)}"
                )
            self.stats[name] = {
                "mean": float(st["mean"]),
                "std": float(st["std"]),
                "log": bool(st.get("log", False)),
                "eps": float(st.get("eps", 0.0)),
                "count": int(st.get("count", 0)),
            }

    # ------------------------------------------------------------------ fitting
    def fit_array(self, name: str, values: np.ndarray, log: bool = False, eps: float = 1.0) -> Normaliser:
        """Fit the statistics of one variable from an array of its training values (NaN ignored).

        Parameters
        ----------
        name : str
            Variable name.
        values : numpy.ndarray
            Training values only (the caller selects the training period and basins).
        log : bool
            Standardise ``log(x + eps)`` instead of ``x`` (discharge); values with ``x + eps <= 0`` become NaN.
        eps : float
            Offset of the log transform, in the variable's units. The default 1 makes it ``log1p`` (for
            discharge in mm/day); a smaller offset weighs low flows more.

        Returns
        -------
        Normaliser
            ``self``, for chaining.
        """
        v = np.asarray(values)
        if log:
            v = self._log(v.astype(np.float32, copy=False), eps, name)
        mean, std, count = nan_moments(v)
        if count == 0:
            raise DataError(f"cannot fit normalisation of {name!r}: no finite training value")
        if not std > 0:
            log_msg = "variable %r is constant in the training data (std 0); using std = 1"
            logging.getLogger("hydroml.datasets").warning(log_msg, name)
            std = 1.0
        self.stats[name] = {"mean": mean, "std": std, "log": bool(log), "eps": float(eps), "count": count}
        return self

    @classmethod
    def fit(
        cls,
        ds,
        variables: Iterable[str],
        *,
        basins: Sequence[str] | None = None,
        period: tuple[str, str] | None = None,
        log_transform: Iterable[str] = (),
        eps: float = 1.0,
    ) -> Normaliser:
        """Fit on an :class:`xarray.Dataset`, restricted to training basins and period.

        Parameters
        ----------
        ds : xarray.Dataset
            Data with ``basin`` and/or ``time`` dimensions.
        variables : iterable of str
            Variables to fit.
        basins : sequence of str, optional
            Training basins (all when ``None``).
        period : (str, str), optional
            Training period, inclusive (all when ``None``).
        log_transform : iterable of str
            Variables standardised as ``log(x + eps)``.
        eps : float
            Log offset.

        Returns
        -------
        Normaliser
        """
        norm = cls()
        logs = set(log_transform)
        for name in variables:
            if name not in ds:
                raise DataError(
                    f"variable {name!r} not found; available: {', '.join(map(str, ds.data_vars))}"
                )
            da = ds[name]
            if basins is not None and "basin" in da.dims:
                da = da.sel(basin=list(basins))
            if period is not None and "time" in da.dims:
                da = da.sel(time=slice(*period))
            norm.fit_array(name, da.values, log=name in logs, eps=eps)
        return norm

    # ------------------------------------------------------------------ applying
    @staticmethod
    def _log(x, eps: float, name: str = ""):
        if _is_torch(x):
            import torch

            return torch.log(x + eps)
        if hasattr(x, "dims"):  # xarray: keep the labels
            return np.log((x + eps).where(x + eps > 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.log(np.asarray(x) + np.asarray(eps, dtype=np.asarray(x).dtype))
        bad = np.isfinite(x) & ~np.isfinite(out)
        if bad.any():
            log.warning(
                "%d values of %r are <= -eps and become NaN under the log transform", int(bad.sum()), name
            )
            out = np.where(bad, np.nan, out)
        return out

    def _get(self, name: str) -> dict[str, Any]:
        try:
            return self.stats[name]
        except KeyError:
            raise DataError(
                f"no normalisation statistics for {name!r}; known: {', '.join(self.stats) or '(none)'}"
            ) from None

    def transform(self, name: str, x):
        """Normalise values of variable ``name`` (numpy array, torch tensor or xarray object)."""
        st = self._get(name)
        if st["log"]:
            x = self._log(x, st["eps"], name)
        return (x - st["mean"]) / st["std"]

    def inverse(self, name: str, x):
        """Undo :meth:`transform`: back to the variable's physical units."""
        st = self._get(name)
        y = x * st["std"] + st["mean"]
        if st["log"]:
            y = (y.exp() if _is_torch(y) else np.exp(y)) - st["eps"]
        return y

    def scale_and_offset(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Means and standard deviations of ``names`` as float64 arrays (for linear, non-log variables)."""
        return (
            np.array([self._get(n)["mean"] for n in names]),
            np.array([self._get(n)["std"] for n in names]),
        )

    def transform_dataset(self, ds, variables: Iterable[str] | None = None):
        """Return a copy of an :class:`xarray.Dataset` with ``variables`` (default: all known) normalised."""
        out = ds.copy()
        for name in variables if variables is not None else [v for v in self.stats if v in ds]:
            out[name] = self.transform(name, ds[name])
        return out

    def __contains__(self, name: str) -> bool:
        return name in self.stats

    def __repr__(self) -> str:
        return f"Normaliser({', '.join(self.stats)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Normaliser) and self.stats == other.stats

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (layout version :data:`FORMAT_VERSION`)."""
        return {
            "format": "hydroml.normaliser",
            "version": FORMAT_VERSION,
            "transform": "(f(x) - mean) / std with f(x) = log(x + eps) where log is true, else f(x) = x",
            "variables": self.stats,
            "log_transform": [k for k, v in self.stats.items() if v["log"]],
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str | None = None) -> Normaliser:
        """Rebuild from :meth:`to_dict` output, of this or an earlier layout.

        Layouts read:

        - version 1 (``"format": "hydroml.normaliser"``, ``"version": 1``): ``variables`` maps each name to
          ``{"mean", "std", "log", "eps", "count"}``. A file with the ``format`` key but no ``version`` is read
          as version 1.
        - version 0, the interim layout that ``hydroml train`` wrote before the datasets' normaliser was used
          (run directories created before commit b6184fd): ``{"kind": "mean_std", "variables": {name: {"mean",
          "std"}}, "log_transform": [names]}``. Its log transform was ``log1p(max(x, 0))``, read as
          ``log(x + 1)`` (``eps`` 1): identical for the non-negative values it was used for (discharge).

        Parameters
        ----------
        obj : dict
            The parsed JSON.
        source : str, optional
            Where ``obj`` comes from (a file name), used in error messages.

        Returns
        -------
        Normaliser

        Raises
        ------
        ConfigError
            An unknown layout or a newer version, naming ``source``, what was expected and what was found.
        """
        where = f"{source}: " if source else ""
        if not isinstance(obj, dict):
            raise ConfigError(
                f"{where}not hydroml normalisation statistics: expected a JSON object, found "
                f"{type(obj).__name__}"
            )
        if obj.get("format") == "hydroml.normaliser" and isinstance(obj.get("variables"), dict):
            version = obj.get("version", 1)  # files from before the version key are version 1
            if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
                raise ConfigError(
                    f"{where}normalisation statistics of layout version {version!r}: this hydroml reads "
                    f"versions 0 to {FORMAT_VERSION} (written by a newer hydroml?)"
                )
            return cls._checked(obj["variables"], where)
        if obj.get("kind") == "mean_std" and isinstance(obj.get("variables"), dict):
            return cls._from_v0(obj, where)
        raise ConfigError(
            f"{where}not hydroml normalisation statistics: expected 'format' == 'hydroml.normaliser' with "
            "'version' and 'variables' (or the earlier layout 'kind' == 'mean_std' with 'variables'), found "
            f"keys {sorted(obj)}"
            + (f" with format {obj['format']!r}" if "format" in obj else "")
            + (f" with kind {obj['kind']!r}" if "kind" in obj else "")
        )

    @classmethod
    def _checked(cls, variables: dict[str, Any], where: str) -> Normaliser:
        for name, st in variables.items():
            if not isinstance(st, dict):
                raise ConfigError(
                    f"{where}variables.{name}: expected a mapping with keys {sorted(_KEYS)}, found {st!r}"
                )
        try:
            return cls(variables)
        except ConfigError as err:
            raise ConfigError(f"{where}{err}") from None

    @classmethod
    def _from_v0(cls, obj: dict[str, Any], where: str) -> Normaliser:
        """The interim ``{"kind": "mean_std"}`` layout (version 0)."""
        logs = obj.get("log_transform") or []
        if not isinstance(logs, list) or not all(isinstance(v, str) for v in logs):
            raise ConfigError(f"{where}log_transform: expected a list of variable names, found {logs!r}")
        unknown = [v for v in logs if v not in obj["variables"]]
        if unknown:
            raise ConfigError(
                f"{where}log_transform names {unknown} that have no statistics; variables: "
                f"{sorted(obj['variables'])}"
            )
        variables = {}
        for name, st in obj["variables"].items():
            if not isinstance(st, dict) or set(st) != {"mean", "std"}:
                found = sorted(st) if isinstance(st, dict) else st
                raise ConfigError(
                    f"{where}variables.{name}: expected keys ['mean', 'std'] (layout 'kind': 'mean_std'), "
                    f"found {found!r}"
                )
            variables[name] = {**st, "log": name in logs, "eps": 1.0}
        log.info(
            "%sread normalisation statistics of the earlier layout (version 0, 'kind': 'mean_std')", where
        )
        return cls._checked(variables, where)

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the statistics to a JSON file atomically and return its path."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Normaliser:
        """Read statistics written by :meth:`to_json` (this or an earlier layout, see :meth:`from_dict`).

        Parameters
        ----------
        path : path-like
            The JSON file (``normalisation.json`` of a run directory).

        Returns
        -------
        Normaliser

        Raises
        ------
        FileNotFoundError
            No such file.
        ConfigError
            Not valid JSON, or not a layout this version reads (the message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: normalisation statistics not found")
        try:
            obj = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(obj, source=str(path))
