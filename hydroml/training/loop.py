"""The training loop: :func:`train` a config into a run directory, resumable and distributed.

Exact resume
------------
Every epoch ends with an atomic checkpoint (weights, optimiser moments and step counts, RNG states, early
stopping state, metrics history; see :mod:`hydroml.training.runs`). The data order of epoch ``e`` is a pure
function of ``(seed, e)`` and the learning rate a pure function of ``e``, so resuming from the checkpoint of
epoch ``e`` replays epochs ``e+1...`` exactly as an uninterrupted run would: the final weights are identical
(bit for bit on the same machine and thread count). A run killed before its first checkpoint restarts from
epoch 1 in the same directory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from hydroml._io import load_yaml
from hydroml._progress import progress_enabled, tqdm
from hydroml.exceptions import ConfigError
from hydroml.training import distributed as D
from hydroml.training._data import load_normaliser, prepare_data
from hydroml.training.config import Config, config_from_dict, config_to_dict, load_config, parse_bytes
from hydroml.training.runs import (
    load_checkpoint,
    make_run_dir,
    restore_rng,
    save_checkpoint,
    save_weights,
    write_metrics_csv,
)

log = logging.getLogger("hydroml.training")
_root_log = logging.getLogger("hydroml")
_BATCH_SLEEP = float(os.environ.get("_HYDROML_TEST_BATCH_SLEEP", "0") or 0)

__all__ = ["train", "build_model", "load_normaliser", "lr_at"]


def build_model(cfg: Config, dims: dict | None = None) -> torch.nn.Module:
    """Build the config's model; ``n_dynamic``/``n_static``/``n_targets`` come from the data section.

    Parameters
    ----------
    cfg : Config
        The configuration.
    dims : dict, optional
        Overrides of the input/output sizes.

    Returns
    -------
    torch.nn.Module
    """
    from hydroml.models import create

    d = cfg.data
    kwargs = {
        "n_dynamic": len(d.dynamic_inputs),
        "n_static": len(d.static_inputs),
        "n_targets": len(d.targets),
        **(dims or {}),
        **cfg.model.params,
    }
    return create(cfg.model.name, **kwargs)


def lr_at(cfg: Config, epoch: int) -> float:
    """The learning rate of (1-based) ``epoch``: a pure function of the config and the epoch."""
    base, s = cfg.optimiser.lr, cfg.schedule
    if s.warmup_epochs and epoch <= s.warmup_epochs:
        return base * epoch / (s.warmup_epochs + 1)
    e = epoch - 1 - s.warmup_epochs
    if s.name == "step":
        return base * s.gamma ** (e // s.step_size)
    if s.name == "exponential":
        return base * s.gamma**e
    if s.name == "cosine":
        span = max(1, cfg.train.epochs - s.warmup_epochs - 1)
        return s.min_lr + 0.5 * (base - s.min_lr) * (1 + math.cos(math.pi * min(e, span) / span))
    return base


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global RNG third-party code may use
    torch.manual_seed(seed)


def _device(cfg: Config) -> torch.device:
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no GPU is available")
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local)
    return torch.device("cpu")


@contextlib.contextmanager
def _run_log(run_dir: Path | None) -> Iterator[None]:
    """Attach a FileHandler ``train.log`` to the ``hydroml`` logger for the run; console verbosity unchanged.

    Without a run directory (ranks other than 0) only warnings and errors are logged, so the console shows
    each message once."""
    if run_dir is None:
        old = _root_log.level
        if _root_log.getEffectiveLevel() < logging.WARNING:
            _root_log.setLevel(logging.WARNING)
        try:
            yield
        finally:
            _root_log.setLevel(old)
        return
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    old_level = _root_log.level
    effective = _root_log.getEffectiveLevel()
    pinned = []
    for h in _root_log.handlers:
        if h.level == logging.NOTSET and effective > logging.INFO:
            h.setLevel(effective)
            pinned.append(h)
    _root_log.addHandler(handler)
    if effective > logging.INFO:
        _root_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        _root_log.removeHandler(handler)
        handler.close()
        _root_log.setLevel(old_level)
        for h in pinned:
            h.setLevel(logging.NOTSET)


def _grouped_stages(model: torch.nn.Module, seq_len: int, batch: int, max_stages: int = 48) -> list[dict]:
    """The model's per-step stages grouped into at most ``max_stages`` chunks (keeps the planner's DP small)."""
    steps = model.stages(seq_len, batch)
    size = math.ceil(len(steps) / max_stages)
    out = []
    for i in range(0, len(steps), size):
        group = steps[i : i + size]
        out.append(
            {
                "name": f"t{i}-{i + len(group) - 1}",
                "activation_bytes": sum(g["activation_bytes"] for g in group),
                "state_bytes": group[0]["state_bytes"],
                "steps": len(group),
            }
        )
    return out


def _configure_checkpointing(model: torch.nn.Module, cfg: Config, local_batch: int) -> str:
    """Apply ``train.memory_budget`` (planned by :func:`hydroml.memory.plan`) or ``train.checkpointing``.

    The plan is computed from the model's analytic per-step estimates (``model.stages``), not from timings,
    so it is the same in every process and after a resume (exact resume needs identical chunking).
    """
    t = cfg.train
    if t.memory_budget is not None:
        budget = parse_bytes(t.memory_budget, "train.memory_budget")
        if not hasattr(model, "stages") or not hasattr(model, "set_checkpoint_schedule"):
            raise ConfigError(
                f"train.memory_budget: model {cfg.model.name!r} does not describe its stages; use the memory "
                "planner directly (hydroml.memory) or train.checkpointing"
            )
        from hydroml import memory

        sched = memory.plan(_grouped_stages(model, cfg.data.seq_len, local_batch), budget)
        memory.apply(model, sched)
        return f"planned for a {t.memory_budget} activation budget: {sched.describe()}"
    if t.checkpointing:
        if not hasattr(model, "set_checkpoint_schedule"):
            raise ConfigError(f"train.checkpointing: model {cfg.model.name!r} has no checkpointing switch")
        model.set_checkpoint_schedule(t.checkpointing)
        return f"time chunks ({'sqrt(T)' if t.checkpointing is True else t.checkpointing} steps)"
    return "off"


def _gathered(dataset, indices: list[np.ndarray], workers: int) -> Iterator[dict]:
    """Batches in order; with ``workers`` > 0, the next ones are gathered by background threads."""
    if workers <= 0:
        for idx in indices:
            yield dataset.get_batch(idx)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hydroml-batch") as pool:
        pending: deque = deque()
        it = iter(indices)
        for idx in it:
            pending.append(pool.submit(dataset.get_batch, idx))
            if len(pending) > workers:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(dataset.get_batch, nxt))


def _to(batch: dict, device: torch.device) -> dict:
    return {
        k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }


@torch.no_grad()
def _validate(
    model,
    data,
    cfg: Config,
    device,
    loss_name: str,
    basin_std: torch.Tensor,
    normaliser: Any,
    info: D.DistInfo | None = None,
) -> dict[str, float]:
    """Median NSE / KGE over basins of the last-step predictions on the validation period (in physical units),
    and the validation loss (normalised units).

    With several processes each one evaluates a disjoint contiguous block of the validation windows
    (:func:`hydroml.training.distributed.split`); the predictions and observations (each ``(basin, time)`` cell
    comes from exactly one window, so summing zeros from the other processes is exact) and the loss sums are
    reduced to rank 0, which computes the metrics from the same arrays as a single process and broadcasts
    them: every process gets the same scores (so takes the same early-stopping decision) and they equal the
    single-process ones to the round-off of the model's forward pass on differently sized batches."""
    from hydroml.evaluation.losses import mse_loss, nse_loss

    info = info or D.DistInfo()
    ds = data
    was_training = model.training
    model.eval()
    n = len(ds)
    nb, nt = len(ds.basins), len(ds.time)
    n_t = len(cfg.data.targets)
    # [sim (n_t), obs (n_t), covered (1)] x basin x time; zeros where another process (or no window) predicts
    acc = np.zeros((2 * n_t + 1, nb, nt), np.float32)
    sums = torch.zeros(2, dtype=torch.float64)  # loss sum, count
    mine = D.split(n, info)
    bs = max(cfg.train.batch_size, 256)
    for i in range(0, len(mine), bs):
        batch = _to(ds.get_batch(mine[i : i + bs]), device)
        y_hat = model(batch)["y_hat"][:, -1:].float()
        y = batch["y"][:, -1:]
        if loss_name == "nse":
            loss = nse_loss(y, y_hat, basin_std[batch["basin"]].unsqueeze(1))
        else:
            loss = mse_loss(y, y_hat)
        k = int(torch.isfinite(y).sum())
        sums[0] += float(loss) * k
        sums[1] += k
        b, t = batch["basin"].cpu().numpy(), batch["time"].cpu().numpy()
        acc[:n_t, b, t] = y_hat[:, 0].cpu().numpy().T
        acc[n_t : 2 * n_t, b, t] = y[:, 0].cpu().numpy().T
        acc[2 * n_t, b, t] = 1.0
    model.train(was_training)
    D.reduce_sum(torch.from_numpy(acc), info)  # shares acc's memory
    D.reduce_sum(sums, info)
    scores = torch.full((3,), float("nan"), dtype=torch.float64)
    if info.is_main:
        per_rank = [len(D.split(n, D.DistInfo(r, info.world_size))) for r in range(info.world_size)]
        log.info(
            "validation: %d windows, evaluated by %d process(es) as %s",
            n,
            info.world_size,
            " + ".join(map(str, per_rank)),
        )
        scores[:] = torch.tensor(_scores(acc, n_t, float(sums[0]), float(sums[1]), cfg, normaliser))
    D.broadcast(scores, info)
    return {"val_loss": float(scores[0]), "val_nse": float(scores[1]), "val_kge": float(scores[2])}


def _scores(
    acc: np.ndarray, n_t: int, loss_sum: float, count: float, cfg: Config, normaliser: Any
) -> tuple[float, float, float]:
    """Validation loss, median NSE and median KGE from the gathered ``[sim, obs, covered]`` arrays."""
    import warnings

    from hydroml.evaluation import kge, nse

    covered = acc[2 * n_t] > 0
    sim = np.where(covered, acc[:n_t], np.nan)
    obs = np.where(covered, acc[n_t : 2 * n_t], np.nan)
    inverse = getattr(normaliser, "inverse", None)
    if inverse is not None:
        for k, name in enumerate(cfg.data.targets):
            sim[k] = inverse(name, sim[k])
            obs[k] = inverse(name, obs[k])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nse_v = np.asarray(nse(obs, sim))  # [n_targets, basin]
        kge_v = np.asarray(kge(obs, sim)) if inverse is not None else np.full_like(nse_v, np.nan)
    return (
        loss_sum / max(count, 1),
        float(np.nanmedian(nse_v)) if np.isfinite(nse_v).any() else float("nan"),
        float(np.nanmedian(kge_v)) if np.isfinite(kge_v).any() else float("nan"),
    )


def _check_agreement(info: D.DistInfo, last_epoch: int, best_epoch: int, model: torch.nn.Module) -> None:
    """After the last epoch: check (and log on rank 0) that every process stopped after the same epoch, with the
    same best epoch and the same weights (a float64 sum of every parameter). Also the end-of-run barrier."""
    if not info.distributed:
        return
    with torch.no_grad():
        checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
    every = D.all_gather(torch.tensor([last_epoch, best_epoch, checksum], dtype=torch.float64), info)
    if not info.is_main:
        return
    if all(torch.equal(e, every[0]) for e in every):
        log.info(
            "all %d processes stopped after epoch %d with best epoch %d and identical weights",
            info.world_size,
            last_epoch,
            best_epoch,
        )
    else:
        log.warning(
            "processes disagree at the end of training (rank: last epoch, best epoch, weight sum): %s",
            "; ".join(f"{r}: {int(e[0])}, {int(e[1])}, {float(e[2])!r}" for r, e in enumerate(every)),
        )


def _better(metric: str, new: float, best: float | None, min_delta: float) -> bool:
    if not np.isfinite(new):
        return False
    if best is None:
        return True
    return new < best - min_delta if metric == "loss" else new > best + min_delta


def _load_cfg(config: Config | dict | str | os.PathLike) -> Config:
    if isinstance(config, Config):
        return config_from_dict(config_to_dict(config))
    if isinstance(config, dict):
        return config_from_dict(config)
    return load_config(config)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bfloat16 matrix products in hardware (AVX-512 BF16 or AMX) through oneDNN.

    On such CPUs (e.g. Intel Sapphire Rapids and later) bf16 autocast speeds up LSTM training (1.7x for
    ``nn.LSTM(25, 128)``, batch 256 x 365 steps, on the benchmark machine); on others it is several times slower
    than float32, so ``train.bf16`` is ignored there.

    Returns
    -------
    bool
        ``True`` when oneDNN reports native bf16 support.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def train(
    config: Config | dict | str | os.PathLike | None = None,
    *,
    runs_dir: str | os.PathLike = "runs",
    resume: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> Path:
    """Train a model from a configuration into a run directory.

    Parameters
    ----------
    config : Config, dict or path, optional
        The training configuration (a YAML file, a mapping or a :class:`Config`); not needed with ``resume``.
    runs_dir : path-like
        Parent of the new run directory ``<runs_dir>/<name>_<YYYYmmdd_HHMMSS>/``.
    resume : path-like, optional
        Continue the run in this directory from its last checkpoint (its ``config.yaml`` is used).
    progress : bool, optional
        Progress bars (default: ``train.progress`` in the config, then ``HYDROML_PROGRESS``).

    Returns
    -------
    pathlib.Path
        The run directory (``config.yaml``, ``normalisation.json``, ``model.safetensors``,
        ``checkpoint.safetensors``/``.json``, ``metrics.csv``, ``train.log``).

    Examples
    --------
    >>> from hydroml.training import train, load_run       # doctest: +SKIP
    >>> run = train("examples/demo_lstm.yaml")
    >>> model, cfg, normaliser = load_run(run)
    """
    if resume is not None:
        resume = Path(resume)
        cfg_path = resume / "config.yaml"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"--resume {resume}: not a hydroml run directory (no config.yaml)")
        cfg = config_from_dict(load_yaml(cfg_path.read_text()))
        if config is not None and config_to_dict(_load_cfg(config)) != config_to_dict(cfg):
            raise ConfigError(f"--resume {resume}: the given config differs from the run's config.yaml")
    elif config is None:
        raise ConfigError("train: give a config (or resume=RUN_DIR)")
    else:
        cfg = _load_cfg(config)

    device = _device(cfg)
    info = D.setup(device.type == "cuda")
    threads = torch.get_num_threads()
    det = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.flush_denormal:
            torch.set_flush_denormal(True)
        return _train(cfg, info, device, runs_dir, resume, progress)
    finally:
        torch.set_num_threads(threads)
        if cfg.train.flush_denormal:
            torch.set_flush_denormal(False)  # torch's default (it has no getter to restore a custom state)
        if device.type == "cuda":
            torch.use_deterministic_algorithms(det[0], warn_only=det[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        D.teardown(info)


def _train(cfg: Config, info: D.DistInfo, device, runs_dir, resume: Path | None, progress) -> Path:
    t = cfg.train
    if cfg.deterministic and device.type == "cuda":
        # CPU kernels used here are deterministic for a fixed thread count; on GPU ask for deterministic ones
        # (restored when train() returns).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if t.batch_size < info.world_size:
        raise ConfigError(f"train.batch_size {t.batch_size} is smaller than the {info.world_size} processes")

    # The data first (bad data leave no run directory), then the run directory, created atomically with its
    # config.yaml and normalisation.json inside (rank 0 creates and writes; the others only read).
    data_normaliser = None
    if resume is not None and (resume / "normalisation.json").is_file():
        data_normaliser = load_normaliser(resume / "normalisation.json")
    data = prepare_data(cfg, normaliser=data_normaliser)
    run_dir: Path | None
    if resume is not None:
        run_dir = resume
        if info.is_main and data_normaliser is None:
            data.normaliser.to_json(run_dir / "normalisation.json")
    elif info.is_main:
        run_dir = make_run_dir(
            runs_dir,
            cfg.name,
            files={
                "config.yaml": yaml.safe_dump(config_to_dict(cfg), sort_keys=False),
                "normalisation.json": data.normaliser.to_json,
            },
        )
    else:
        run_dir = None
    run_dir = Path(D.broadcast_str(str(run_dir) if run_dir else None, info))
    writer = run_dir if info.is_main else None

    with _run_log(writer):
        log.info(
            "run directory %s (process %d of %d, device %s)", run_dir, info.rank, info.world_size, device
        )
        log.info(
            "%d training samples%s; %d basins; seq_len %d",
            len(data.train),
            f", {len(data.validation)} validation samples" if data.validation is not None else "",
            len(data.train.basins),
            cfg.data.seq_len,
        )

        _seed_everything(cfg.seed)
        model = build_model(cfg).to(device)
        local_batch = math.ceil(t.batch_size / info.world_size)
        log.info(
            "model %s: %d parameters; checkpointing %s",
            cfg.model.name,
            sum(p.numel() for p in model.parameters()),
            _configure_checkpointing(model, cfg, local_batch),
        )
        opt_cls = torch.optim.AdamW if cfg.optimiser.name == "adamw" else torch.optim.Adam
        optimiser = opt_cls(
            model.parameters(),
            lr=cfg.optimiser.lr,
            weight_decay=cfg.optimiser.weight_decay,
            betas=tuple(cfg.optimiser.betas),
        )

        start_epoch, history = 1, []
        best, best_epoch, bad_epochs, finished = None, 0, 0, False
        if resume is not None and (run_dir / "checkpoint.safetensors").is_file():
            model_state, optim_state, state = load_checkpoint(run_dir)
            model.load_state_dict(model_state)
            optimiser.load_state_dict(optim_state)
            restore_rng(state["rng_tensors"], state["rng"])
            start_epoch = int(state["epoch"]) + 1
            history = state["history"]
            best, best_epoch, bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
            finished = bool(state.get("finished"))
            if writer is not None:  # a kill between the checkpoint and metrics.csv loses no row
                write_metrics_csv(run_dir / "metrics.csv", history)
            log.info("resuming %s after epoch %d", run_dir, start_epoch - 1)
        elif resume is not None:
            log.info("no checkpoint in %s yet: starting from epoch 1", run_dir)

        ddp = model
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if t.compile:  # the training forward only; weights are saved from the uncompiled `model`
            from hydroml.export import compile_model

            ddp = compile_model(ddp, t.compile, name=cfg.model.name)

        use_bf16 = t.bf16 and (device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()))
        if t.bf16 and not use_bf16:
            log.info(
                "train.bf16 ignored on this %s: it has no native bfloat16 arithmetic (AVX-512 BF16 / AMX), "
                "where bf16 autocast is slower than float32",
                device.type.upper(),
            )
        basin_std = data.basin_std.to(device)
        val_std = data.val_basin_std.to(device) if data.val_basin_std is not None else None
        from hydroml.evaluation.losses import mse_loss, nse_loss

        es = cfg.early_stopping
        show = info.is_main and progress_enabled(progress if progress is not None else t.progress)
        n_last = cfg.data.predict_last_n
        epochs = range(start_epoch, t.epochs + 1) if not finished else range(0)
        bar = tqdm(epochs, progress=show, desc=f"train {cfg.name}", unit="epoch")
        for epoch in bar:
            t0 = time.perf_counter()
            lr = lr_at(cfg, epoch)
            for g in optimiser.param_groups:
                g["lr"] = lr
            ddp.train()
            order = D.epoch_order(len(data.train), cfg.seed, epoch)
            batches = D.global_batches(order, t.batch_size)
            sum_loss = torch.zeros((), dtype=torch.float64)
            inner = tqdm(
                _gathered(data.train, [D.shard(gb, info) for gb in batches], t.num_workers),
                progress=show,
                desc=f"epoch {epoch}",
                leave=False,
                unit="batch",
                total=len(batches),
            )
            for batch in inner:
                batch = _to(batch, device)
                y = batch["y"]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    y_hat = ddp(batch)["y_hat"][:, -n_last:]
                y_hat = y_hat.float()
                if t.loss == "nse":
                    loss = nse_loss(y, y_hat, basin_std[batch["basin"]].unsqueeze(1))
                else:
                    loss = mse_loss(y, y_hat)
                # Weight this process's mean by its share of the global batch's valid targets, so that the
                # average DDP takes over processes is the loss of the whole global batch.
                counts = torch.tensor([float(torch.isfinite(y).sum())], dtype=torch.float64)
                local = counts.clone()
                D.all_reduce_sum(counts, info)
                share = float(local / counts.clamp_min(1))
                optimiser.zero_grad(set_to_none=True)
                (loss * (share * info.world_size)).backward()
                if t.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad_norm)
                optimiser.step()
                sum_loss += float(loss.detach()) * share
                if _BATCH_SLEEP:  # test hook: slow the loop down so a test can kill it mid-epoch
                    time.sleep(_BATCH_SLEEP)
                if show:
                    inner.set_postfix(loss=f"{float(loss.detach()):.4f}")
            D.all_reduce_sum(sum_loss, info)
            row: dict[str, Any] = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": float(sum_loss) / max(1, len(batches)),
            }
            validate = data.validation is not None and (epoch % t.validate_every == 0 or epoch == t.epochs)
            improved = data.validation is None
            stop = False
            if validate:
                row.update(
                    _validate(model, data.validation, cfg, device, t.loss, val_std, data.normaliser, info)
                )
                score = row["val_loss"] if es.metric == "loss" else row[f"val_{es.metric}"]
                if _better(es.metric, score, best, es.min_delta):
                    best, best_epoch, bad_epochs, improved = float(score), epoch, 0, True
                else:
                    bad_epochs += 1
                    stop = es.patience is not None and bad_epochs >= es.patience
                if best is None and epoch == t.epochs:
                    improved = True  # never a finite score: keep the last weights
            row["seconds"] = round(time.perf_counter() - t0, 3)
            history.append(row)
            # Every process got rank 0's validation scores (bit for bit), so takes the same decisions: same
            # best epoch, same stop epoch (checked after the loop by _check_agreement).
            done = stop or epoch == t.epochs
            if writer is not None:
                if improved:
                    save_weights(run_dir / "model.safetensors", model, {"epoch": str(epoch)})
                if t.keep_checkpoints:  # per-epoch weights for hydroml.diagnostics
                    meta = {"epoch": str(epoch), "lr": repr(lr)}
                    save_weights(run_dir / "checkpoints" / f"epoch_{epoch:04d}.safetensors", model, meta)
                save_checkpoint(
                    run_dir,
                    model,
                    optimiser,
                    {
                        "epoch": epoch,
                        "best": best,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "history": history,
                        "finished": done,
                        "world_size": info.world_size,
                    },
                )
                write_metrics_csv(run_dir / "metrics.csv", history)
            msg = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "epoch"
            )
            log.info("epoch %d: %s", epoch, msg)
            if show:
                post = {"loss": f"{row['train_loss']:.4f}"}
                if "val_nse" in row:
                    post["val_nse"] = f"{row['val_nse']:.3f}"
                bar.set_postfix(post)
            if stop:
                log.info(
                    "early stopping after epoch %d: no %s improvement for %d epochs (best %.4g at epoch %d)",
                    epoch,
                    es.metric,
                    bad_epochs,
                    best,
                    best_epoch,
                )
                break
        last_epoch = history[-1]["epoch"] if history else start_epoch - 1
        _check_agreement(info, last_epoch, best_epoch, model)
        if finished:
            log.info("run %s had already finished", run_dir)
        log.info("finished: %s", run_dir)
    return run_dir
