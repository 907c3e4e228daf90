"""hydroml.data."""
