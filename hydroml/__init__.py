"""hydroml: fast, memory-lean deep learning for hydrology.

Load gridded climate data and gauge records into canonical xarray objects, turn them into PyTorch sequence
datasets, train discharge LSTMs and evaporation CNNs under a memory budget, run exact tiled inference on large
grids, and score the results with hydrological skill metrics.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logger = logging.getLogger("hydroml")
logger.addHandler(logging.NullHandler())

__all__ = ["__version__", "logger"]
