"""hydroml.memory: measure, plan and cut the memory of training and inference.

Stands alone (it imports nothing else from hydroml but the exceptions, progress and atomic-write helpers), so
it works on any ``torch.nn.Module``.

- :func:`profile` -- per-stage bytes saved for backward (``saved_tensors_hooks``, deduplicated by storage),
  forward times and the peak of one training step.
- :func:`plan` -- the schedule with the least recomputation under a byte budget (nested checkpointing,
  dynamic programme over the chain); :func:`sqrt_schedule`, :func:`store_all` for comparison;
  :func:`parse_bytes` reads ``"1.5GB"``.
- :func:`apply`, :func:`run_chain`, :func:`checkpoint` -- run a schedule; :func:`checkpoint_lstm` -- an
  ``nn.LSTM`` checkpointed over chunks of time steps.
- :func:`tiled_predict` -- exact tiled inference of fully convolutional models with halos, lazy input and
  incremental NetCDF/zarr output; :func:`probe_receptive_field`.
- :class:`ReversibleSequence`, :class:`AdditiveCoupling` -- reversible residual blocks.
- :func:`catchment_backward` -- exact two-pass tiled training for losses on catchment sums.
- :func:`stream_predict` -- recurrent inference in time chunks carrying the state.

Typical use in training::

    from hydroml import memory
    prof = memory.profile(model, batch)                  # a model with stages()/memory_chain, Sequential, LSTM
    sched = memory.plan(prof, memory.parse_bytes("1.5GB"))
    model = memory.apply(model, sched)
"""

from hydroml.memory.catchment import catchment_backward, catchment_sums
from hydroml.memory.checkpoint import (
    Chain,
    CheckpointedChain,
    apply,
    as_chain,
    checkpoint,
    checkpoint_lstm,
    lstm_chain,
    run_chain,
    stateful_chain,
)
from hydroml.memory.plan import (
    Schedule,
    Segment,
    StageCost,
    Store,
    as_costs,
    evaluate,
    format_bytes,
    min_budget,
    parse_bytes,
    plan,
    sqrt_schedule,
    store_all,
)
from hydroml.memory.profile import Profile, SavedTensorCounter, profile
from hydroml.memory.reversible import AdditiveCoupling, ReversibleSequence
from hydroml.memory.streaming import stream_predict
from hydroml.memory.tiling import probe_receptive_field, tiled_predict, tiles

__all__ = [
    "AdditiveCoupling",
    "Chain",
    "CheckpointedChain",
    "Profile",
    "ReversibleSequence",
    "SavedTensorCounter",
    "Schedule",
    "Segment",
    "StageCost",
    "Store",
    "apply",
    "as_costs",
    "as_chain",
    "catchment_backward",
    "catchment_sums",
    "checkpoint",
    "checkpoint_lstm",
    "evaluate",
    "format_bytes",
    "lstm_chain",
    "min_budget",
    "parse_bytes",
    "plan",
    "probe_receptive_field",
    "profile",
    "run_chain",
    "sqrt_schedule",
    "stateful_chain",
    "store_all",
    "stream_predict",
    "tiled_predict",
    "tiles",
]
