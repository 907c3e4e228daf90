"""hydroml.datasets: normalised, compactly indexed sequence datasets for PyTorch.

- :class:`BasinDataset`: lumped (basin) data for LSTM-type models, batches gathered at once.
- :class:`GridDataset`: (time window, spatial tile) samples of gridded data for CNNs.
- :class:`BasinGridDataset`: per-basin windows of gridded forcings over time (``cnn_lstm``), never copied.
- :class:`BatchSampler`: whole batches, shuffled per epoch, split across ranks.
- :class:`Normaliser`: statistics fitted on the training period and basins only, saved as JSON.
- splits: :func:`split_by_period`, :func:`split_by_basins`, :func:`kfold_basins`.
"""

from hydroml.datasets.basin import BasinDataset, BatchSampler
from hydroml.datasets.basin_grid import BasinGridDataset
from hydroml.datasets.grid import GridDataset
from hydroml.datasets.normalise import Normaliser
from hydroml.datasets.splits import Split, kfold_basins, split_by_basins, split_by_period

__all__ = [
    "BasinDataset",
    "BasinGridDataset",
    "BatchSampler",
    "GridDataset",
    "Normaliser",
    "Split",
    "kfold_basins",
    "split_by_basins",
    "split_by_period",
]
