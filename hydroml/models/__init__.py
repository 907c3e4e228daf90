"""Models: a registry of ``nn.Module`` factories (``create``, ``list_models``, ``register_model``).

Every model's ``forward(batch: dict) -> dict`` returns at least ``"y_hat"``.
"""

from hydroml.models.registry import create, list_models, register_model

__all__ = ["create", "list_models", "register_model"]
