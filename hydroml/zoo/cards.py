"""Model cards: the metadata record of every pretrained model in the zoo.

A card is a frozen dataclass saved as JSON next to the weights (``hydroml/zoo/weights/<name>.json``): what the
model reads (inputs and their units), how inputs were normalised, its sequence length, the data and period it
was trained on, its licence, the test scores it reached and how to reproduce it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from hydroml._io import write_json_atomic
from hydroml.exceptions import ConfigError

__all__ = ["ModelCard"]


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """Metadata of one pretrained model (``architecture.tag``).

    Attributes
    ----------
    name : str
        Zoo name ``architecture.tag``, e.g. ``"lstm.demo_discharge"``.
    architecture : str
        Registry name of the network (:func:`hydroml.models.create`).
    model_params : dict
        Keyword arguments of the network's factory.
    description : str
        One paragraph: what the model predicts, from what.
    inputs : dict
        Dynamic inputs in the model's order, ``{name: units}``.
    static_inputs : dict
        Static attributes (basin models) or static maps (gridded), ``{name: units}``, in the model's order.
    targets : dict
        Predicted variables, ``{name: units}``.
    normalisation : dict
        ``{variable: {"mean": m, "std": s}}`` fitted on the training period and basins.
    seq_len : int
        Input window in time steps (basin models; 1 for gridded models).
    lags : int
        Gridded models: time steps per input channel (current and ``lags - 1`` previous).
    valid_mask : str, optional
        Gridded models: static map marking valid cells (others are NaN in forecasts).
    time_step : str
        ``"daily"`` or ``"monthly"``.
    training_data : str
        The data set (and product) the model was trained on.
    train_period, validation_period, test_period : list of str
        ``[start, end]`` inclusive.
    basins : list of str
        Basins used (basin models).
    licence : str
        Licence of the weights (and of the data they derive from).
    test_scores : dict
        Scores on the test period, e.g. ``{"nse": {...per basin...}, "nse_median": 0.8}``, computed with
        ``forecast_mode``.
    forecast_mode : str
        Mode used to compute ``test_scores`` (``"sliding"`` for basin models).
    config : dict
        Resolved training configuration.
    config_hash : str
        ``sha256:`` of ``config`` as canonical JSON.
    weights_sha256 : str
        sha256 of the safetensors file.
    trained_by : str
        The command that reproduces the weights.
    hydroml_version : str
        Version that trained the model.
    created : str
        UTC timestamp.
    version : str
        Version of this zoo entry.
    references : list of str
        Papers describing the architecture and data.
    """

    name: str
    architecture: str
    model_params: dict
    description: str
    inputs: dict
    targets: dict
    normalisation: dict
    static_inputs: dict = dataclasses.field(default_factory=dict)
    seq_len: int = 1
    lags: int = 1
    valid_mask: str | None = None
    time_step: str = "daily"
    training_data: str = ""
    train_period: list = dataclasses.field(default_factory=list)
    validation_period: list = dataclasses.field(default_factory=list)
    test_period: list = dataclasses.field(default_factory=list)
    basins: list = dataclasses.field(default_factory=list)
    licence: str = "BSD-3-Clause"
    test_scores: dict = dataclasses.field(default_factory=dict)
    forecast_mode: str = "sliding"
    config: dict = dataclasses.field(default_factory=dict)
    config_hash: str = ""
    weights_sha256: str = ""
    trained_by: str = ""
    hydroml_version: str = ""
    created: str = ""
    version: str = "1"
    references: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        arch, _, tag = self.name.partition(".")
        if not tag or arch != self.architecture:
            raise ConfigError(
                f"zoo name {self.name!r} must be 'architecture.tag' with architecture {self.architecture!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The card as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model card") -> ModelCard:
        """Build a card from a dict; unknown keys are errors that list the valid keys.

        Parameters
        ----------
        data : dict
            As written by :meth:`to_dict`.
        where : str
            Used in error messages (the file name).
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {missing}")
        return cls(**data)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelCard:
        """Read a card from a JSON file."""
        path = Path(path)
        return cls.from_dict(json.loads(path.read_text()), where=str(path))

    def write(self, path: str | os.PathLike) -> Path:
        """Write the card to a JSON file atomically."""
        return write_json_atomic(path, self.to_dict())

    def summary(self) -> str:
        """A readable multi-line description (used by ``hydroml zoo show``)."""

        def units(d: dict) -> str:
            return ", ".join(f"{k} [{v}]" for k, v in d.items()) or "-"

        lines = [
            f"{self.name} (version {self.version}, hydroml {self.hydroml_version})",
            f"  {self.description}",
            f"  architecture : {self.architecture} {json.dumps(self.model_params, sort_keys=True)}",
            f"  inputs       : {units(self.inputs)}",
            f"  static       : {units(self.static_inputs)}",
            f"  targets      : {units(self.targets)}",
            f"  seq_len      : {self.seq_len} ({self.time_step})"
            + (f", lags {self.lags}" if self.lags > 1 else ""),
            f"  trained on   : {self.training_data}",
            f"  periods      : train {'..'.join(self.train_period)}, validation "
            f"{'..'.join(self.validation_period)}, test {'..'.join(self.test_period)}",
        ]
        if self.basins:
            lines.append(f"  basins       : {', '.join(map(str, self.basins))}")
        scores = {k: v for k, v in self.test_scores.items() if not isinstance(v, dict)}
        if scores:
            lines.append(
                f"  test scores  : {', '.join(f'{k}={v:.3f}' for k, v in scores.items())} ({self.forecast_mode})"
            )
        lines += [
            f"  licence      : {self.licence}",
            f"  config_hash  : {self.config_hash}",
            f"  reproduce    : {self.trained_by}",
        ]
        return "\n".join(lines)
