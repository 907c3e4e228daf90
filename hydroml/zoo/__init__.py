"""hydroml.zoo."""
