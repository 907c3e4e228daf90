"""Training curves from a run directory, and the memory planner's per-stage table as a bar chart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hydroml.exceptions import DataError
from hydroml.plot._common import get_ax

__all__ = ["read_metrics", "training_curves", "memory_plan"]


def read_metrics(run: Any) -> Any:
    """The per-epoch metrics of a run as a :class:`pandas.DataFrame`.

    Parameters
    ----------
    run : path-like or pandas.DataFrame
        A run directory (``runs/<name>_<YYYYmmdd_HHMMSS>/``), its ``metrics.csv``, or a DataFrame (returned as is).

    Returns
    -------
    pandas.DataFrame
        One row per epoch (columns ``epoch``, ``train_loss``, ``val_loss``, ``val_nse``...).

    Raises
    ------
    FileNotFoundError
        If there is no ``metrics.csv``.
    DataError
        If it has no ``epoch`` column or no row.
    """
    import pandas as pd

    if isinstance(run, pd.DataFrame):
        df = run
        where = "metrics table"
    else:
        path = Path(os.fspath(run))
        if path.is_dir():
            path = path / "metrics.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no metrics.csv (is it a hydroml run directory?)")
        df = pd.read_csv(path)
        where = str(path)
    if "epoch" not in df.columns or df.empty:
        raise DataError(
            f"{where}: expected an 'epoch' column and one row per epoch; found columns {list(df.columns)}"
        )
    return df


def training_curves(
    run: Any,
    *,
    ax: Any = None,
    losses: list[str] | None = None,
    scores: list[str] | None = None,
    log_loss: bool = False,
    mark_best: str | None = "auto",
    title: str | None = None,
) -> Any:
    """Loss curves per epoch (left axis) and validation scores (right axis) of a training run.

    Parameters
    ----------
    run : path-like or pandas.DataFrame
        A run directory, its ``metrics.csv`` or the table (see :func:`read_metrics`).
    ax : matplotlib.axes.Axes, optional
        Where to draw.
    losses : list of str, optional
        Loss columns (default every column ending in ``loss``).
    scores : list of str, optional
        Score columns on the right axis (default ``val_nse``, ``val_kge`` when present).
    log_loss : bool
        Logarithmic loss axis.
    mark_best : str or None
        Column whose best epoch gets a vertical line (``"auto"``: ``val_nse`` if present, else ``val_loss``;
        scores are maximised, losses minimised); ``None`` for none.
    title : str, optional
        Axes title (default the run directory's name).

    Returns
    -------
    matplotlib.axes.Axes
        The loss axes; the score axes is ``ax.score_ax`` (``None`` without scores).
    """
    df = read_metrics(run)
    ax = get_ax(ax, (6.0, 4.0))
    epoch = df["epoch"].to_numpy()
    losses = losses if losses is not None else [c for c in df.columns if str(c).endswith("loss")]
    scores = scores if scores is not None else [c for c in ("val_nse", "val_kge") if c in df.columns]
    missing = [c for c in [*losses, *scores] if c not in df.columns]
    if missing:
        raise DataError(
            f"training_curves: columns {missing} not in the metrics; available: {list(df.columns)}"
        )
    handles = []
    for k, c in enumerate(losses):
        y = df[c].to_numpy(dtype=float)
        (h,) = ax.plot(epoch, y, marker="o", ms=3, color=f"C{k}", ls="-" if "train" in c else "--", label=c)
        handles.append(h)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log_loss:
        ax.set_yscale("log")
    ax.score_ax = None
    if scores:
        sax = ax.twinx()
        for k, c in enumerate(scores):
            (h,) = sax.plot(
                epoch, df[c].to_numpy(dtype=float), marker="s", ms=3, color=f"C{len(losses) + k}", label=c
            )
            handles.append(h)
        sax.set_ylabel("validation score")
        ax.score_ax = sax
    if mark_best == "auto":
        mark_best = (
            "val_nse" if "val_nse" in df.columns else ("val_loss" if "val_loss" in df.columns else None)
        )
    if mark_best:
        if mark_best not in df.columns:
            raise DataError(
                f"training_curves: mark_best={mark_best!r} is not a column; available: {list(df.columns)}"
            )
        y = df[mark_best].to_numpy(dtype=float)
        if np.isfinite(y).any():
            i = int(np.nanargmin(y) if mark_best.endswith("loss") else np.nanargmax(y))
            ax.axvline(epoch[i], color="0.4", lw=0.8, ls=":")
            ax.text(
                epoch[i],
                0.98,
                f" best {mark_best}\n epoch {epoch[i]}",
                transform=ax.get_xaxis_transform(),
                va="top",
                fontsize=7,
                color="0.3",
            )
    ax.set_xticks(epoch if len(epoch) <= 20 else ax.get_xticks())
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="center right")
    if title is None and not hasattr(run, "columns"):
        p = Path(os.fspath(run))
        title = (p if p.is_dir() else p.parent).name
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _roles(schedule: Any, n: int) -> list[str]:
    """Per stage at the top level of a schedule: ``stored``, ``checkpoint`` (segment start) or ``recomputed``."""
    from hydroml.memory import Segment, Store

    roles = ["stored"] * n
    if schedule is None:
        return roles
    for it in schedule.items:
        if isinstance(it, Store):
            roles[it.stage] = "stored"
        elif isinstance(it, Segment):
            roles[it.start] = "checkpoint"
            for i in range(it.start + 1, it.stop):
                roles[i] = "recomputed"
    return roles


_ROLE_LABELS = {
    "stored": "stored",
    "checkpoint": "checkpointed: input kept, recomputed",
    "recomputed": "recomputed inside a segment",
}

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def memory_plan(
    costs: Any,
    schedule: Any = None,
    *,
    ax: Any = None,
    unit: str = "MiB",
    log: bool = False,
    max_labels: int = 30,
    title: str | None = None,
) -> Any:
    """The memory planner's per-stage table as a bar chart, coloured by a schedule.

    For each stage of the chain: the bytes it keeps for backward when stored (``saved_bytes``, wide bars) and
    the bytes of its input (``input_bytes``, narrow dark bars: what a checkpoint at that stage keeps). With a
    :class:`~hydroml.memory.Schedule`, wide bars are coloured by the stage's role at the top level of the
    schedule: stored, checkpointed segment start (only the input is kept), or recomputed inside a segment; a
    text box gives the predicted peak against the budget and the no-checkpointing peak, and the recomputation.

    Parameters
    ----------
    costs : hydroml.memory.Profile, list of StageCost, or Schedule
        The per-stage table (from :func:`hydroml.memory.profile`); a Schedule brings its own costs.
    schedule : hydroml.memory.Schedule, optional
        A plan (from :func:`hydroml.memory.plan`) to colour the bars by.
    ax : matplotlib.axes.Axes, optional
        Where to draw.
    unit : {"B", "KiB", "MiB", "GiB", "kB", "MB", "GB"}
        Unit of the y axis.
    log : bool
        Logarithmic y axis.
    max_labels : int
        Stage names are written under the bars up to this many stages (else stage indices).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.axes.Axes
        Two bar containers (``ax.containers[0]`` saved bytes, ``[1]`` input bytes), one bar per stage.
    """
    from hydroml.memory import Schedule, format_bytes

    if unit not in _UNITS:
        raise DataError(f"memory_plan: unknown unit {unit!r}; expected one of {', '.join(_UNITS)}")
    if isinstance(costs, Schedule):
        schedule, costs = schedule or costs, costs.costs
    persistent = int(getattr(costs, "persistent_bytes", 0) or 0)
    from hydroml.memory import as_costs

    stages = as_costs(costs)
    n = len(stages)
    scale = float(_UNITS[unit])
    saved = np.array([s.saved_bytes for s in stages], dtype=float) / scale
    inp = np.array([s.input_bytes for s in stages], dtype=float) / scale
    roles = _roles(schedule, n)
    colours = {"stored": "tab:blue", "checkpoint": "tab:orange", "recomputed": "0.8"}
    ax = get_ax(ax, (max(6.0, min(14.0, 0.35 * n + 4)), 4.0))
    x = np.arange(n)
    ax.bar(
        x,
        saved,
        width=0.8,
        color=[colours[r] for r in roles],
        edgecolor="0.3",
        linewidth=0.4,
        label="saved for backward",
    )
    ax.bar(x, inp, width=0.3, color="k", alpha=0.75, label="input (a checkpoint keeps)")
    if schedule is not None:
        from matplotlib.patches import Patch

        handles = [
            Patch(color=colours[r], label=_ROLE_LABELS[r])
            for r in ("stored", "checkpoint", "recomputed")
            if r in roles
        ]
        handles.append(Patch(color="k", alpha=0.75, label="input bytes"))
        ax.legend(
            handles=handles, fontsize=8, loc="upper right", title="saved bytes, by role", title_fontsize=8
        )
        lines = [
            f"no checkpointing: {format_bytes(schedule.store_all_bytes)} kept",
            f"plan: {format_bytes(schedule.predicted_peak_bytes)} predicted peak"
            + (
                f" (budget {format_bytes(schedule.budget_bytes)})"
                if schedule.budget_bytes is not None
                else ""
            ),
            f"recomputation: {100 * schedule.recompute_ratio:.0f}% of a forward pass",
        ]
        ax.text(
            0.01,
            0.98,
            "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
        )
    else:
        ax.legend(fontsize=8, loc="upper right")
        if persistent:
            ax.text(
                0.01,
                0.98,
                f"kept whatever the schedule: {format_bytes(persistent)}",
                transform=ax.transAxes,
                va="top",
                fontsize=8,
            )
    ax.set_xticks(x)
    if n <= max_labels:
        ax.set_xticklabels([s.name for s in stages], rotation=45, ha="right", fontsize=8)
    else:
        ax.set_xticklabels([str(i) if i % max(1, n // max_labels) == 0 else "" for i in x], fontsize=8)
        ax.set_xlabel("stage")
    ax.set_ylabel(f"activation memory [{unit}]")
    if log:
        ax.set_yscale("log")
    else:
        top = float(max(saved.max(initial=0), inp.max(initial=0)))
        ax.set_ylim(0, top * 1.7 if top > 0 else 1)  # room for the legend and the text
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return ax
