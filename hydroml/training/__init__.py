"""hydroml.training."""
