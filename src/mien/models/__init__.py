"""Weight registry: every pretrained file mien uses, resolved by name and checked by SHA-256."""

from mien.models.registry import ModelInfo, ModelNotFoundError, list_models, resolve

__all__ = ["ModelInfo", "ModelNotFoundError", "list_models", "resolve"]
