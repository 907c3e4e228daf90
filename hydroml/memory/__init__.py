"""hydroml.memory."""
