"""Restormer backbone, the CEA adapter and its baselines; ``build_model`` picks by config."""

from cea_jax.models.factory import RestorationModel, build_model

__all__ = ["RestorationModel", "build_model"]
