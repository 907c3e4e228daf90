"""hydroml.data.readers."""
