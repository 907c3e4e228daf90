"""``cnn_lstm``: discharge from gridded forcings, without averaging the grid over the basin by hand.

Takes a batch of :class:`hydroml.datasets.basin_grid.BasinGridDataset`: ``x_grid`` ``[B, T, C, h, w]`` (the
window of gridded forcings around each basin), ``cell_weight`` ``[B, h, w]`` (area x fraction of each cell inside
the basin, 0 outside, summing to 1) and optionally ``x_static_grid`` ``[B, S, h, w]`` (static maps).

At every time step a small CNN encodes the window:

1. cells outside the basin are masked (set to 0, the normalised mean) and the mask itself is an input channel,
   so the network knows the basin's shape;
2. ``conv_layers`` 3x3 convolutions (GELU), with 2x2 average pooling between them (``pool=True``), widths
   ``conv_width``;
3. the feature maps are pooled over the basin with the cell weights (pooled to the feature resolution):
   a weighted mean per channel, plus the weighted basin mean of the raw inputs (the lumped forcings, so the
   model starts no worse than a lumped LSTM).

The per-step basin features ``[B, T, F]`` feed an ``nn.LSTM`` and a linear head: ``{"y_hat": [B, T, n_targets],
"h_n", "c_n", "state"}`` (all steps; training takes the last ``predict_last_n``). An optional ``batch["state"]``
starts the LSTM from a previous state.

``checkpointing=True`` (or an int: time steps per chunk) runs the CNN over chunks of time steps under
``torch.utils.checkpoint`` (``use_reentrant=False``): the CNN activations of all ``B x T`` frames, the bulk of
the memory, are recomputed in backward instead of stored; outputs and gradients are unchanged up to float32
round-off (the chunked convolutions may sum in another order).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hydroml.exceptions import ConfigError
from hydroml.models.registry import register_model

__all__ = ["CNNLSTM", "cnn_lstm"]


class CNNLSTM(nn.Module):
    """CNN encoder over basin windows of gridded forcings + LSTM discharge model.

    Parameters
    ----------
    n_inputs : int
        Gridded dynamic input channels ``C``.
    n_static_maps : int
        Static map channels ``S`` (0 for none).
    n_targets : int
        Targets.
    conv_width : int
        Channels of the convolutions.
    conv_layers : int
        Number of 3x3 convolutions (>= 1).
    pool : bool
        2x2 average pooling between convolutions (cheaper on larger windows).
    hidden_size : int
        LSTM hidden size.
    dropout : float
        Dropout before the head.
    initial_forget_bias : float, optional
        Initial forget-gate bias.
    checkpointing : bool or int
        Checkpoint the CNN over chunks of time steps (``True``: chunks of 32 steps; an int: that many).
    """

    gridded = False  # basin windows from BasinGridDataset, not whole grids (hydroml.forecast)

    def __init__(
        self,
        n_inputs: int,
        n_static_maps: int = 0,
        n_targets: int = 1,
        conv_width: int = 16,
        conv_layers: int = 2,
        pool: bool = True,
        hidden_size: int = 64,
        dropout: float = 0.0,
        initial_forget_bias: float | None = 3.0,
        checkpointing: bool | int = False,
    ) -> None:
        super().__init__()
        if n_inputs < 1 or n_static_maps < 0 or n_targets < 1 or conv_width < 1 or conv_layers < 1:
            raise ConfigError(
                "cnn_lstm: need n_inputs >= 1, n_static_maps >= 0, n_targets >= 1, conv_width >= 1, "
                f"conv_layers >= 1; got {n_inputs}, {n_static_maps}, {n_targets}, {conv_width}, {conv_layers}"
            )
        self.n_inputs, self.n_static_maps, self.n_targets = n_inputs, n_static_maps, n_targets
        self.pool = bool(pool)
        cin = n_inputs + n_static_maps + 1  # + the basin mask
        self.convs = nn.ModuleList()
        for _ in range(conv_layers):
            self.convs.append(nn.Conv2d(cin, conv_width, 3, padding=1))
            cin = conv_width
        self.n_features = conv_width + n_inputs
        self.lstm = nn.LSTM(self.n_features, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_targets)
        self.hidden_size = hidden_size
        if initial_forget_bias is not None:
            with torch.no_grad():
                self.lstm.bias_hh_l0[hidden_size : 2 * hidden_size] = initial_forget_bias
        self.checkpointing = checkpointing

    @property
    def chunk(self) -> int | None:
        """Time steps per checkpointed CNN chunk (None: no checkpointing)."""
        if self.checkpointing is True:
            return 32
        if not self.checkpointing:
            return None
        return int(self.checkpointing)

    def set_checkpointing(self, value: bool | int) -> None:
        """Switch CNN checkpointing on (``True`` or steps per chunk) or off."""
        self.checkpointing = value

    def _encode(self, x: torch.Tensor, weight: torch.Tensor, static: torch.Tensor | None) -> torch.Tensor:
        """Encode frames ``x [B, t, C, h, w]`` -> ``[B, t, F]``."""
        B, t, C, h, w = x.shape
        mask = (weight > 0).to(x.dtype)  # [B, h, w]
        lumped = torch.einsum("btchw,bhw->btc", x, weight)
        m5 = mask[:, None, None]  # [B, 1, 1, h, w]
        parts = [x * m5]
        if static is not None:
            parts.append((static * mask[:, None])[:, None].expand(B, t, -1, h, w))
        parts.append(m5.expand(B, t, 1, h, w))
        z = torch.cat(parts, dim=2).reshape(B * t, -1, h, w)
        wgt = weight[:, None].repeat_interleave(t, dim=0)  # [B*t, 1, h, w]
        for k, conv in enumerate(self.convs):
            if k and self.pool and min(z.shape[-2:]) >= 2:
                z = F.avg_pool2d(z, 2, ceil_mode=True)
                wgt = F.avg_pool2d(wgt, 2, ceil_mode=True, divisor_override=1)  # sums of weights
            z = F.gelu(conv(z))
        feat = (z * wgt).sum(dim=(-2, -1)) / wgt.sum(dim=(-2, -1)).clamp(min=1e-12)  # [B*t, conv_width]
        return torch.cat([feat.reshape(B, t, -1), lumped], dim=-1)

    def forward(self, batch: dict) -> dict:
        """Predict discharge at every step of the window.

        Parameters
        ----------
        batch : dict
            ``x_grid`` ``[B, T, C, h, w]``, ``cell_weight`` ``[B, h, w]``, optional ``x_static_grid``
            ``[B, S, h, w]`` and ``state`` ``(h_0, c_0)``.

        Returns
        -------
        dict
            ``y_hat`` ``[B, T, n_targets]``, ``h_n``, ``c_n`` ``[1, B, hidden]``, ``state`` ``(h_n, c_n)``.
        """
        x = batch["x_grid"]
        weight = batch["cell_weight"].to(x.dtype)
        static = batch.get("x_static_grid")
        if x.dim() != 5 or x.shape[2] != self.n_inputs:
            raise ValueError(
                f"cnn_lstm: x_grid must be [batch, time, {self.n_inputs}, h, w], got {tuple(x.shape)}"
            )
        if weight.shape != (x.shape[0], *x.shape[-2:]):
            raise ValueError(f"cnn_lstm: cell_weight must be [batch, h, w] = {(x.shape[0], *x.shape[-2:])}")
        if self.n_static_maps and (static is None or static.shape[1] != self.n_static_maps):
            raise ValueError(f"cnn_lstm: x_static_grid must be [batch, {self.n_static_maps}, h, w]")
        if not self.n_static_maps:
            static = None
        chunk = self.chunk
        T = x.shape[1]
        if chunk and torch.is_grad_enabled():
            feats = [
                checkpoint(self._encode, x[:, s : s + chunk], weight, static, use_reentrant=False)
                for s in range(0, T, chunk)
            ]
            feat = torch.cat(feats, dim=1)
        else:
            feat = self._encode(x, weight, static)
        state = batch.get("state")
        out, (h, c) = self.lstm(feat, state) if state is not None else self.lstm(feat)
        y = self.head(self.dropout(out))
        return {"y_hat": y, "h_n": h, "c_n": c, "state": (h, c)}


@register_model("cnn_lstm")
def cnn_lstm(**config) -> CNNLSTM:
    """Build a :class:`CNNLSTM` (``hydroml.models.create("cnn_lstm", n_inputs=3, ...)``)."""
    valid = set(inspect.signature(CNNLSTM.__init__).parameters) - {"self"}
    unknown = set(config) - valid
    if unknown:
        raise ConfigError(f"cnn_lstm: unknown config keys {sorted(unknown)}; valid keys: {sorted(valid)}")
    return CNNLSTM(**config)
