"""The weights pytree: one type, one layout, and the logical axes of every weight.

Layout (what ``llama.Llama`` reads and the checkpoint loaders build):
``{"embed": {"embedding"}, "layers": {...stacked on axis 0...}, "final_norm": {"scale"},
"lm_head": {"kernel"}}`` (no ``lm_head`` with tied embeddings). ``LOGICAL_AXES`` names each
weight's axes; it is where per-weight sharding rules attach (a rule maps a logical axis,
e.g. ``heads`` or ``mlp``, to a mesh axis, as jax-llm-examples' llama3 ``ShardingRules``
does), and today it lets the loaders check every shape against the config.
"""

from __future__ import annotations

from typing import Any

import jax

from prophetkv_jax.model.config import LlamaConfig

Params = dict[str, Any]

_LINEAR_AXES = {
    "q_proj": ("embed", "q_heads"), "k_proj": ("embed", "kv_heads"), "v_proj": ("embed", "kv_heads"),
    "o_proj": ("q_heads", "embed"), "gate_proj": ("embed", "mlp"), "up_proj": ("embed", "mlp"),
    "down_proj": ("mlp", "embed"),
}
LOGICAL_AXES: dict[str, tuple[str, ...]] = {
    "embed/embedding": ("vocab", "embed"),
    "layers/attn_norm/scale": ("layers", "embed"),
    "layers/mlp_norm/scale": ("layers", "embed"),
    **{f"layers/attn/{p}/kernel": ("layers", *_LINEAR_AXES[p]) for p in ("q_proj", "k_proj", "v_proj", "o_proj")},
    **{f"layers/mlp/{p}/kernel": ("layers", *_LINEAR_AXES[p]) for p in ("gate_proj", "up_proj", "down_proj")},
    **{f"layers/attn/{p}/bias": ("layers", _LINEAR_AXES[p][1]) for p in ("q_proj", "k_proj", "v_proj")},
    "layers/attn/q_norm/scale": ("layers", "head_dim"),
    "layers/attn/k_norm/scale": ("layers", "head_dim"),
    "final_norm/scale": ("embed",),
    "lm_head/kernel": ("embed", "vocab"),
}


def axis_sizes(config: LlamaConfig) -> dict[str, int]:
    c = config
    return {
        "vocab": c.vocab_size, "embed": c.hidden_size, "layers": c.num_layers, "mlp": c.intermediate_size,
        "q_heads": c.num_heads * c.head_dim, "kv_heads": c.num_kv_heads * c.head_dim, "head_dim": c.head_dim,
    }


def expected_paths(config: LlamaConfig) -> list[str]:
    """The ``LOGICAL_AXES`` keys this config's model has (head, q/k/v bias and q/k norms are optional)."""

    def present(path: str) -> bool:
        if path.startswith("lm_head/"):
            return not config.tie_word_embeddings
        if path.endswith("/bias"):
            return config.qkv_bias
        if path in ("layers/attn/q_norm/scale", "layers/attn/k_norm/scale"):
            return config.qk_norm
        return True

    return [path for path in LOGICAL_AXES if present(path)]


def flatten(params: Params, prefix: str = "") -> dict[str, Any]:
    """{"layers/attn/q_proj/kernel": array, ...}: the keys of ``LOGICAL_AXES``."""
    flat = {}
    for name, value in params.items():
        path = f"{prefix}{name}"
        flat.update(flatten(value, f"{path}/") if isinstance(value, dict) else {path: value})
    return flat


def shape_mismatches(params: Params, config: LlamaConfig) -> list[str]:
    """Every weight that is missing, unexpected, or shaped unlike the config implies."""
    sizes = axis_sizes(config)
    expected = {
        path: tuple(sizes[a] for a in LOGICAL_AXES[path]) for path in expected_paths(config)
    }
    actual = {path: tuple(value.shape) for path, value in flatten(params).items()}
    problems = [f"{p} is missing" for p in expected if p not in actual]
    problems += [f"{p} is unexpected" for p in actual if p not in expected]
    problems += [
        f"{p} has shape {actual[p]}, config implies {shape}"
        for p, shape in expected.items() if p in actual and actual[p] != shape
    ]
    return problems


def unstack_layers(params: Params) -> Params:
    """The same weights with the layer stack split into ``layers_0``, ``layers_1``, ...:
    the layout of ``Llama(config, unrolled=True)``. Inside a jitted function the split is
    one copy of the layer weights, taken once per call."""
    layers = params["layers"]
    count = len(jax.tree.leaves(layers)[0])
    per_layer = {f"layers_{i}": jax.tree.map(lambda x, i=i: x[i], layers) for i in range(count)}
    return {**{k: v for k, v in params.items() if k != "layers"}, **per_layer}
