"""hydroml.evaluation."""
