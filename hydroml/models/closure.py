"""``closure``: a light per-pixel network with spatial context that corrects a gridded evaporation product.

Used by :mod:`hydroml.closure` (water-cycle closure supervision, Hascoet, Pellet, Aires and Takiguchi, Remote
Sensing 16(1):170, 2024). Input ``batch["x"]`` ``[B, C, H, W]`` holds normalised monthly channels (the
evaporation product to correct, forcings, static maps); one of them (``product_channel``) is the product. The
network is ``context_layers`` 3x3 convolutions (spatial context, radius ``context_layers`` cells) followed by
``pixel_layers`` 1x1 convolutions (a per-pixel MLP) producing one value ``d`` per cell, turned into evaporation
``E`` [mm/month] by ``mode``:

- ``"multiplicative"`` (default): ``E = max(p, 0) * exp(max_log_correction * tanh(d / max_log_correction))``,
  a bounded multiplicative correction of the product ``p`` (de-normalised with ``product_mean`` and
  ``product_std``), positive when ``p`` is;
- ``"additive"``: ``E = p + target_std * d``;
- ``"direct"``: ``E = target_mean + target_std * d`` (no product needed: ``product_channel=None``).

The last layer starts at zero, so an untrained correction model returns the product unchanged. The output
``y_hat`` is ``E`` normalised with ``target_mean``/``target_std`` (so :func:`hydroml.forecast.forecast`'s
inverse transform returns mm/month); ``"evspsbl"`` is ``E`` itself and ``"correction"`` is ``d``.

All convolutions pad with zeros and there is no normalisation over the map, so the model tiles exactly
(:meth:`ClosureNet.receptive_field`; :mod:`hydroml.memory.catchment` trains it tile by tile on large grids).
``checkpointing=True`` recomputes the convolution stack in backward; outputs are unchanged.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hydroml.exceptions import ConfigError
from hydroml.models.registry import register_model
from hydroml.models.unet import ReceptiveField

__all__ = ["ClosureNet", "closure"]

_MODES = ("multiplicative", "additive", "direct")


class ClosureNet(nn.Module):
    """Per-pixel evaporation (correction) network with a small spatial context.

    Parameters
    ----------
    in_channels : int
        Input channels ``C``.
    product_channel : int or None
        Index of the evaporation product among the channels (required unless ``mode="direct"``).
    mode : {"multiplicative", "additive", "direct"}
        How the network output becomes evaporation (module docstring).
    hidden : int
        Width of every layer.
    context_layers : int
        Number of 3x3 convolutions (receptive-field radius in cells), >= 0.
    pixel_layers : int
        Number of hidden 1x1 convolutions, >= 0.
    product_mean, product_std : float
        Normalisation of the product channel (to de-normalise it).
    target_mean, target_std : float
        Normalisation of the output evaporation (``y_hat`` is normalised with them).
    max_log_correction : float
        Bound of ``|log(E / p)|`` in multiplicative mode.
    checkpointing : bool
        Recompute the hidden layers in backward (same outputs).
    nan_fill : float
        Value replacing NaN inputs (0 = the mean of normalised inputs).
    """

    gridded = True  # hydroml.forecast: maps whole grids, {"x": [B, C, H, W]} -> [B, 1, H, W]

    def __init__(
        self,
        in_channels: int,
        product_channel: int | None = 0,
        mode: str = "multiplicative",
        hidden: int = 32,
        context_layers: int = 2,
        pixel_layers: int = 2,
        product_mean: float = 0.0,
        product_std: float = 1.0,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        max_log_correction: float = 1.0,
        checkpointing: bool = False,
        nan_fill: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ConfigError(f"closure: mode must be one of {', '.join(_MODES)}, got {mode!r}")
        if in_channels < 1 or hidden < 1 or context_layers < 0 or pixel_layers < 0:
            raise ConfigError(
                "closure: need in_channels >= 1, hidden >= 1, context_layers >= 0, pixel_layers >= 0; got "
                f"{in_channels}, {hidden}, {context_layers}, {pixel_layers}"
            )
        if mode != "direct" and (product_channel is None or not 0 <= product_channel < in_channels):
            raise ConfigError(
                f"closure: mode {mode!r} needs product_channel in [0, {in_channels}), got {product_channel!r}"
            )
        if product_std <= 0 or target_std <= 0 or max_log_correction <= 0:
            raise ConfigError("closure: product_std, target_std and max_log_correction must be > 0")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.mode, self.product_channel, self.nan_fill = mode, product_channel, nan_fill
        self.context_layers = context_layers
        self.register_buffer("_stats", torch.tensor([product_mean, product_std, target_mean, target_std]))
        self.max_log_correction = float(max_log_correction)
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(context_layers):
            layers += [nn.Conv2d(c, hidden, 3, padding=1), nn.GELU()]
            c = hidden
        for _ in range(pixel_layers):
            layers += [nn.Conv2d(c, hidden, 1), nn.GELU()]
            c = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.checkpointing = bool(checkpointing)

    def receptive_field(self) -> ReceptiveField:
        """Radius ``context_layers``, stride 1, halo ``context_layers`` (exact tiling)."""
        r = self.context_layers
        return ReceptiveField(radius=r, stride=1, halo=r)

    def forward(self, batch: dict) -> dict:
        """Predict monthly evaporation per cell.

        Parameters
        ----------
        batch : dict
            ``"x"``: ``[B, in_channels, H, W]`` normalised (NaN allowed).

        Returns
        -------
        dict
            ``"y_hat"`` ``[B, 1, H, W]`` (normalised ``E``), ``"evspsbl"`` ``[B, 1, H, W]`` (mm/month),
            ``"correction"`` ``[B, 1, H, W]`` (``d``).
        """
        x = batch["x"] if isinstance(batch, dict) else batch
        if x.dim() != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(
                f"closure: batch['x'] must be [batch, {self.config['in_channels']}, H, W], got {tuple(x.shape)}"
            )
        x = torch.nan_to_num(x, nan=self.nan_fill)
        if self.checkpointing and torch.is_grad_enabled() and len(self.body):
            h = checkpoint(self.body, x, use_reentrant=False)
        else:
            h = self.body(x)
        d = self.head(h)
        pm, ps, tm, ts = self._stats.to(x.dtype)
        if self.mode == "direct":
            e = tm + ts * d
        else:
            p = x[:, self.product_channel : self.product_channel + 1] * ps + pm
            if self.mode == "additive":
                e = p + ts * d
            else:
                b = self.max_log_correction
                e = torch.clamp(p, min=0.0) * torch.exp(b * torch.tanh(d / b))
        return {"y_hat": (e - tm) / ts, "evspsbl": e, "correction": d}


@register_model("closure")
def closure(**config) -> ClosureNet:
    """Build a :class:`ClosureNet` (``hydroml.models.create("closure", in_channels=8, ...)``)."""
    valid = set(inspect.signature(ClosureNet.__init__).parameters) - {"self"}
    unknown = set(config) - valid
    if unknown:
        raise ConfigError(f"closure: unknown config keys {sorted(unknown)}; valid keys: {sorted(valid)}")
    return ClosureNet(**config)
