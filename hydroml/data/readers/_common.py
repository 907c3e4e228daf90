"""Static-attribute table handling shared by the basin readers (CAMELS-US, Caravan)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
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


# --------------------------------------------------------------------------------------------------------
# text tables: encodings, parser errors and bad cells as one clear DataError naming the file and line
# --------------------------------------------------------------------------------------------------------
def detect_encoding(path, encoding: str | None = None) -> str:
    """The text encoding of ``path``: ``encoding`` if given (checked), else detected.

    Detection: a UTF-16 or UTF-8 byte-order mark, UTF-16 without one (every other byte NUL), UTF-8, and
    latin-1 (ISO-8859-1) for anything else, which is logged.

    Raises
    ------
    DataError
        ``encoding`` is unknown, or the file does not decode with it (naming the line and byte).
    """
    import codecs
    import logging
    from pathlib import Path

    path = Path(path)
    raw = path.read_bytes()
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DataError(
                f"{path}: unknown text encoding {encoding!r}; expected e.g. 'utf-8', 'latin-1', 'utf-16'"
            ) from None
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise DataError(
                f"{path}: not valid {encoding} text (byte {raw[err.start : err.start + 1]!r} at offset "
                f"{err.start}, line {line}); expected the encoding given by the 'encoding' option, or leave it "
                "unset to detect UTF-8 / UTF-16 / latin-1"
            ) from None
        return encoding
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    head = raw[:4096]
    if len(head) >= 4 and head[1::2].count(0) > 0.4 * len(head[1::2]) and head[0::2].count(0) == 0:
        return "utf-16-le"
    if len(head) >= 4 and head[0::2].count(0) > 0.4 * len(head[0::2]) and head[1::2].count(0) == 0:
        return "utf-16-be"
    if b"\x00" in head:
        raise DataError(f"{path}: binary data (NUL bytes) where a text table was expected")
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        logging.getLogger("hydroml.data").info(
            "%s is not UTF-8 (byte %r on line %d): read as latin-1 (ISO-8859-1); pass encoding=... if that is "
            "wrong",
            path,
            raw[err.start : err.start + 1],
            line,
        )
        return "latin-1"


def read_table(path, what: str, **kwargs):
    """``pandas.read_csv`` with its errors turned into one :class:`DataError` naming the file (and line).

    ``what`` describes the expected layout for the message (e.g. ``"gauge_id year month day discharge flag"``).
    """
    import re
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file; expected {what}") from None
    except pd.errors.ParserError as err:
        msg = str(err).strip().splitlines()[0]
        m = re.search(r"line (\d+)", msg)
        where = f", line {m.group(1)}" if m else ""
        raise DataError(f"{path}{where}: cannot parse the table ({msg}); expected {what}") from None
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not valid {err.encoding} text (at byte offset {err.start}); expected {what} in UTF-8, "
            "UTF-16 or latin-1 (set the 'encoding' option)"
        ) from None
    except (ValueError, TypeError, OverflowError) as err:
        raise DataError(
            f"{path}: cannot read the table ({str(err).splitlines()[0][:200]}); expected {what}"
        ) from None


def numeric_columns(df: pd.DataFrame, columns, path, first_line: int, what: str = "a number") -> pd.DataFrame:
    """Convert ``columns`` of ``df`` to float64; a cell that is not a number is a :class:`DataError`.

    ``first_line`` is the file line of the first data row (1-based), so the message names the file, the line,
    the column and the value found.
    """
    out = df.copy()
    for col in columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype("float64")
            continue
        text = s.astype("string").str.strip()
        conv = pd.to_numeric(text, errors="coerce")
        bad = conv.isna() & text.notna() & (text != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}, line {first_line + i}: column {col!r} holds {str(text.iloc[i])!r}; expected {what} "
                f"({int(bad.sum())} such cell(s) in the file)"
            )
        out[col] = conv.astype("float64")
    return out


def dates_from_columns(df: pd.DataFrame, cols: dict[str, str], path, first_line: int) -> pd.DatetimeIndex:
    """Dates from year / month / day columns; a missing or impossible date names the file and line."""
    parts = {}
    for k, c in cols.items():
        v = pd.to_numeric(df[c], errors="coerce")
        parts[k] = v
    frame = pd.DataFrame(parts)
    bad = frame.isna().any(axis=1)
    if not bad.any():
        dates = pd.to_datetime(frame.astype("int64"), errors="coerce")
        bad = dates.isna()
        if not bad.any():
            return pd.DatetimeIndex(dates)
    i = int(np.flatnonzero(bad.to_numpy())[0])
    found = " ".join(str(df[c].iloc[i]) for c in cols.values())
    raise DataError(
        f"{path}, line {first_line + i}: no valid date in columns {list(cols.values())} (found {found!r}); "
        f"expected year month day ({int(bad.sum())} such row(s))"
    )
