"""Shared tiny models for the CEA tests: built, initialised and jitted once per session.

Every model-level test uses the same odd-sized batch shape so jit compiles once per
variant (compilation, not execution, dominates on a 2-core CPU).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, Callable

import jax
import numpy as np
import pytest

from cea_jax.configs import get_config
from cea_jax.models import build_model

BATCH_SHAPE = (2, 17, 23, 3)
# Compilation dominates these tests on CPU; the inputs are tiny, so trade run speed for
# compile speed. Use as jax.jit(f, compiler_options=FAST_COMPILE).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@dataclasses.dataclass(frozen=True)
class TinyModel:
    config: Any
    model: Any
    variables: Any
    forward: Callable  # jitted model.apply(variables, x, train=..., return_maps=...)


def images(seed: int, shape: tuple[int, ...] = BATCH_SHAPE) -> np.ndarray:
    return np.random.RandomState(seed).uniform(0.0, 1.0, shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _tiny(variant: str, overrides: tuple[tuple[str, Any], ...]) -> TinyModel:
    config = get_config("tiny", variant, **dict(overrides))
    model = build_model(config)
    variables = jax.jit(model.init, compiler_options=FAST_COMPILE)(jax.random.PRNGKey(0), images(0))
    forward = jax.jit(model.apply, static_argnames=("train", "return_maps"), compiler_options=FAST_COMPILE)
    return TinyModel(config, model, variables, forward)


@pytest.fixture(scope="session")
def tiny() -> Callable[..., TinyModel]:
    """tiny(variant, **overrides) -> TinyModel, cached for the session."""
    return lambda variant, **overrides: _tiny(variant, tuple(sorted(overrides.items())))


def set_gates(variables: Any, value: float) -> Any:
    """A copy of the variables with every adapter gate gamma set to ``value``."""
    def visit(path, leaf):
        return np.full_like(leaf, value) if getattr(path[-1], "key", None) == "gamma" else leaf
    return jax.tree_util.tree_map_with_path(visit, variables)


def without_adapters(variables: Any) -> Any:
    """The backbone's share of a variant's variables (drops every ``adapter_*`` subtree)."""
    def strip(tree: Any) -> Any:
        if not isinstance(tree, dict):
            return tree
        return {key: strip(value) for key, value in tree.items() if not key.startswith("adapter_")}
    return strip(variables)


@pytest.fixture(scope="session")
def helpers() -> types.SimpleNamespace:
    """Plain helper functions (fixtures, so test modules need not import conftest)."""
    return types.SimpleNamespace(
        BATCH_SHAPE=BATCH_SHAPE, FAST_COMPILE=FAST_COMPILE, images=images, set_gates=set_gates,
        without_adapters=without_adapters,
    )
