"""Data for training: open the source, fit the normaliser on the training period and basins, build the
:class:`hydroml.datasets.BasinDataset` of the training and validation periods."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from hydroml.datasets import BasinDataset, Normaliser
from hydroml.exceptions import DataError

log = logging.getLogger("hydroml.training")


_DATA_SUFFIXES = (".nc", ".nc4", ".netcdf", ".zarr")
_CATALOG_SUFFIXES = (".yaml", ".yml")


def open_source(data_cfg) -> xr.Dataset:
    """Open ``data.source``: ``"demo"``, a catalog name, a catalog entry YAML file, or a NetCDF/zarr path.

    A file goes through the same checks as a catalog entry: :func:`hydroml.data.io.open_dataset` (decoding,
    coordinates, undeclared ``-999`` sentinels), then :func:`hydroml.data.variables.to_canonical` on every
    variable named like a canonical one (its ``units`` attribute converted into the canonical units, physical
    ranges checked); other variables (basin attributes) pass through unchanged.

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    DataError, UnitError, CatalogError
        Bad data, units or catalog entry, naming the file and variable.
    """
    source = data_cfg.source
    if source == "demo":
        from hydroml.data.demo import load_demo

        return load_demo(data_cfg.product or "basins")
    path = Path(os.path.expanduser(source))
    looks_like_path = path.suffix.lower() in _DATA_SUFFIXES + _CATALOG_SUFFIXES or os.sep in source
    if looks_like_path and not path.exists():
        raise FileNotFoundError(
            f"data.source {source!r}: no such file or folder (expected a catalog entry name, or a NetCDF / zarr "
            "file or a catalog YAML file that exists)"
        )
    from hydroml import catalog

    if path.exists():
        if path.suffix.lower() in _CATALOG_SUFFIXES:
            entry = catalog.load_entry_file(path)
            return entry.open(root=data_cfg.root, product=data_cfg.product)
        if path.suffix.lower() not in _DATA_SUFFIXES and not (path / ".zgroup").exists():
            raise DataError(
                f"data.source {source!r}: unsupported file type {path.suffix or '(none)'!r}; expected a NetCDF "
                f"or zarr file ({', '.join(_DATA_SUFFIXES)}), a catalog YAML file or a catalog entry name (for "
                "CSV or text data, write a catalog entry with a reader)"
            )
        return _open_file(path)
    return catalog.open(source, root=data_cfg.root, product=data_cfg.product)


def _open_file(path: Path) -> xr.Dataset:
    """A NetCDF / zarr file through open_dataset and the canonical step (identity mapping of canonical names)."""
    from hydroml.data.io import open_dataset
    from hydroml.data.variables import to_canonical, variables_table

    ds = open_dataset(path, chunks=None)
    table = variables_table()
    mapping = {str(v): str(v) for v in ds.data_vars if str(v) in table}
    if not mapping:
        raise DataError(
            f"{path}: no variable has a canonical name (found {', '.join(map(str, ds.data_vars)) or 'none'}); "
            f"expected names such as {', '.join(sorted(table)[:8])}... in canonical units, or write a catalog "
            "entry that maps the file's names and units"
        )
    return to_canonical(ds, mapping, source=str(path), passthrough="*").load()


def _select(ds: xr.Dataset, data_cfg) -> xr.Dataset:
    needed = list(dict.fromkeys(data_cfg.dynamic_inputs + data_cfg.static_inputs + data_cfg.targets))
    missing = [v for v in needed if v not in ds]
    if missing:
        raise DataError(
            f"data.source {data_cfg.source!r}: variable(s) {', '.join(missing)} not found; available: "
            f"{', '.join(sorted(map(str, ds.data_vars)))}"
        )
    return ds[needed]


def _std_for(dataset: BasinDataset, train: BasinDataset) -> torch.Tensor:
    """Training-period target std of each basin of ``dataset`` (1 for a basin the training set lacks)."""
    std = train.basin_target_std()
    pos = {b: i for i, b in enumerate(train.basins)}
    out = np.ones((len(dataset.basins), std.shape[1]), np.float32)
    for i, b in enumerate(dataset.basins):
        if b in pos:
            out[i] = std[pos[b]]
    return torch.from_numpy(out)


@dataclass
class TrainingData:
    """The datasets and normaliser of a run."""

    train: BasinDataset
    validation: BasinDataset | None
    normaliser: Normaliser
    basin_std: torch.Tensor  # [train basins, n_targets]: training targets' std (normalised units)
    val_basin_std: torch.Tensor | None  # the same for the validation dataset's basins


def prepare_data(cfg, normaliser: Normaliser | None = None) -> TrainingData:
    """Open the data, fit (or reuse) the normaliser on the training period and basins, build the datasets."""
    d = cfg.data
    ds = _select(open_source(d), d)
    common = dict(
        dynamic_inputs=d.dynamic_inputs,
        static_inputs=d.static_inputs,
        targets=d.targets,
        seq_len=d.seq_len,
        lead_time=d.lead_time,
        basins=d.basins,
        progress=False,
    )
    train = BasinDataset(
        ds,
        predict_last_n=d.predict_last_n,
        period=tuple(d.train_period),
        normaliser=normaliser,
        log_transform=list(d.targets) if d.log_targets else (),
        **common,
    )
    val = val_std = None
    if d.validation_period:
        val = BasinDataset(
            ds, predict_last_n=1, period=tuple(d.validation_period), normaliser=train.normaliser, **common
        )
        val_std = _std_for(val, train)
    return TrainingData(train, val, train.normaliser, _std_for(train, train), val_std)


def load_normaliser(path: str | os.PathLike) -> Normaliser:
    """Read ``normalisation.json``."""
    return Normaliser.from_json(path)
