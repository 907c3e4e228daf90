"""hydroml.datasets."""
