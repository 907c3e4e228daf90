"""Static-attribute table handling shared by the basin readers (CAMELS-US, Caravan)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import xarray as xr

from hydroml.exceptions import DataError


def join_attribute_tables(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Join attribute tables of the same basins side by side, keeping the first of any repeated column."""
    table = pd.concat(frames, axis=1)
    return table.loc[:, ~table.columns.duplicated()]


def select_attributes(
    table: pd.DataFrame, attributes: Sequence[str] | None, source: str, where: str = ""
) -> pd.DataFrame:
    """The named columns of ``table`` (error naming the unknown ones), or all numeric ones for ``None``.

    ``source`` (the reader name) starts the error message and ``where`` (e.g. ``" in <folder>"``) follows
    "not found".
    """
    if attributes is None:
        return table.select_dtypes("number")
    unknown = [a for a in attributes if a not in table.columns]
    if unknown:
        raise DataError(
            f"{source}: attributes {unknown} not found{where}; available: {sorted(table.columns)}"
        )
    return table[list(attributes)]


def select_basins(table: pd.DataFrame, basins: Sequence[str] | None, source: str, where: str) -> pd.DataFrame:
    """The rows of ``basins`` in that order (error naming those absent; ``where`` ends the message)."""
    if basins is None:
        return table
    absent = [b for b in basins if b not in table.index]
    if absent:
        raise DataError(f"{source}: basins {absent} have no attributes {where}")
    return table.loc[list(basins)]


def add_statics(ds: xr.Dataset, table: pd.DataFrame, skip: Iterable[str] = ()) -> xr.Dataset:
    """Add each column of ``table`` (rows in ``ds.basin`` order) to ``ds`` on ``(basin,)``, in place.

    Columns in ``skip`` or already in ``ds`` are left out; text columns become ``str`` arrays.
    """
    skip = set(skip)
    for col in table.columns:
        if col in skip or col in ds.variables:
            continue
        values = table[col].to_numpy()
        text = not pd.api.types.is_numeric_dtype(table[col]) and not pd.api.types.is_bool_dtype(table[col])
        ds[col] = ("basin", values.astype(str) if text else values)
    return ds
