"""Train / validation / test splits: by period, by basin list, and k-fold over basins (ungauged prediction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hydroml.exceptions import ConfigError


@dataclass(frozen=True)
class Split:
    """One split: the basins (``None`` = all) and the period (``None`` = all) of each role."""

    train_basins: tuple[str, ...] | None
    test_basins: tuple[str, ...] | None
    train_period: tuple[str, str] | None = None
    test_period: tuple[str, str] | None = None
    val_basins: tuple[str, ...] | None = None
    val_period: tuple[str, str] | None = None


def _check_period(name: str, period: tuple[str, str]) -> tuple[pd.Timestamp, pd.Timestamp]:
    try:
        start, end = (pd.Timestamp(p) for p in period)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} period {period!r}: expected (start, end) dates ({err})") from err
    if end < start:
        raise ConfigError(f"{name} period {period!r}: end is before start")
    return start, end


def split_by_period(
    train: tuple[str, str], test: tuple[str, str], val: tuple[str, str] | None = None, basins=None
) -> Split:
    """A temporal split: the same basins, disjoint periods.

    Parameters
    ----------
    train, test : (str, str)
        Inclusive periods.
    val : (str, str), optional
        Validation period.
    basins : sequence of str, optional
        Basins for every role (all when ``None``).

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        When two periods overlap or one is malformed.
    """
    named = {"train": train, "test": test} | ({"val": val} if val is not None else {})
    bounds = {k: _check_period(k, v) for k, v in named.items()}
    keys = list(bounds)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if bounds[a][0] <= bounds[b][1] and bounds[b][0] <= bounds[a][1]:
                raise ConfigError(f"{a} period {named[a]} overlaps {b} period {named[b]}")
    bas = tuple(basins) if basins is not None else None
    return Split(
        train_basins=bas,
        test_basins=bas,
        train_period=tuple(train),
        test_period=tuple(test),
        val_basins=bas if val is not None else None,
        val_period=tuple(val) if val is not None else None,
    )


def split_by_basins(
    train: Sequence[str], test: Sequence[str], val: Sequence[str] | None = None, period=None
) -> Split:
    """A spatial split from explicit basin lists (which must be disjoint)."""
    groups = {"train": list(train), "test": list(test)} | ({"val": list(val)} if val is not None else {})
    seen: dict[str, str] = {}
    for role, ids in groups.items():
        for b in ids:
            if b in seen:
                raise ConfigError(f"basin {b!r} is in both the {seen[b]} and the {role} basins")
            seen[b] = role
    per = tuple(period) if period is not None else None
    return Split(
        train_basins=tuple(train),
        test_basins=tuple(test),
        train_period=per,
        test_period=per,
        val_basins=tuple(val) if val is not None else None,
        val_period=per if val is not None else None,
    )


def kfold_basins(basins: Sequence[str], k: int, seed: int = 0, period=None) -> list[Split]:
    """K-fold cross-validation over basins: each basin is a test basin exactly once.

    Parameters
    ----------
    basins : sequence of str
        All basin ids.
    k : int
        Number of folds, ``2 <= k <= len(basins)``.
    seed : int
        Seed of the shuffle.
    period : (str, str), optional
        Period used by every role.

    Returns
    -------
    list of Split
        ``k`` splits; fold sizes differ by at most one.
    """
    ids = list(basins)
    if len(set(ids)) != len(ids):
        raise ConfigError("kfold_basins: duplicated basin ids")
    if not 2 <= k <= len(ids):
        raise ConfigError(
            f"kfold_basins: k must be between 2 and the number of basins ({len(ids)}), found {k}"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, k)
    out = []
    for f in folds:
        test = set(f.tolist())
        out.append(
            split_by_basins(
                [ids[i] for i in range(len(ids)) if i not in test],
                [ids[i] for i in sorted(test)],
                period=period,
            )
        )
    return out
