"""hydroml.plot."""
