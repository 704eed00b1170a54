"""Llama-family architecture hyper-parameters, shared by the model, the loaders and the engine.

Qwen2 and Qwen3 are the same decoder with two switches: ``qkv_bias`` (Qwen2/2.5: bias on the
q/k/v projections) and ``qk_norm`` (Qwen3: per-head RMSNorm on q and k before RoPE). ``FAMILIES``
maps an HF ``model_type`` / GGUF ``general.architecture`` to those switches.
"""

from __future__ import annotations

import dataclasses
import math

# Compute dtypes the model supports: fp32 (CPU default, exact against references) and bf16.
DTYPES = ("float32", "bfloat16")
_SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
          "max_position_embeddings")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama-3 style frequency-dependent RoPE scaling (HF ``rope_type: llama3``)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Frozen (hashable) so it can be a static argument of ``jax.jit``."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 8192
    qkv_bias: bool = False
    qk_norm: bool = False
    dtype: str = "float32"  # compute dtype; parameters keep the dtype they are loaded in

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is not supported (choose one of {', '.join(DTYPES)})")
        for name in _SIZES:  # a zero here would surface later as a division by zero or an empty matmul
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("rope_theta", "rms_norm_eps"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even (rotary embeddings rotate two halves)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"
            )

    @property
    def group_size(self) -> int:
        return self.num_heads // self.num_kv_heads


FAMILIES: dict[str, dict[str, bool]] = {
    "llama": {"qkv_bias": False, "qk_norm": False},
    "mistral": {"qkv_bias": False, "qk_norm": False},
    "qwen2": {"qkv_bias": True, "qk_norm": False},
    "qwen3": {"qkv_bias": False, "qk_norm": True},
}


def tiny_config(**overrides) -> LlamaConfig:
    """A few-layer GQA model for tests and CPU smoke runs."""
    fields = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
        num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=10000.0,
        max_position_embeddings=4096,
    )
    fields.update(overrides)
    return LlamaConfig(**fields)
