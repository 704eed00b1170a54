"""Every Llama-family weight, declared once: ``WEIGHTS``.

A row gives a parameter's path in the Flax tree, its logical axes (their sizes come from the
config, see ``axis_sizes``), whether a config has it, its initialiser, and its tensor names in HF
safetensors and GGUF files with the one conversion the loaders apply. Everything else is derived
from the rows: the modules in ``llama`` create their parameters with ``create``, ``sharding`` maps
the logical axes to the mesh, and ``checkpoint`` stacks the file tensors with ``from_tensors``. A new
model family is new rows (and a switch in ``config.FAMILIES``), not edits in four files.

Tree layout: ``{"embed": {"embedding"}, "layers": {...stacked on axis 0...}, "final_norm": {"scale"},
"lm_head": {"kernel"}}``; the per-layer weights carry a leading ``layers`` axis (the layer scan's).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prophetkv_jax.model.config import LlamaConfig

Params = dict[str, Any]
Initializer = Callable[..., jax.Array]

_HF_LAYER = "model.layers.{i}"
_GGUF_LAYER = "blk.{i}"


def _always(config: LlamaConfig) -> bool:
    return True


def _with_qkv_bias(config: LlamaConfig) -> bool:  # Qwen2
    return config.qkv_bias


def _with_qk_norm(config: LlamaConfig) -> bool:  # Qwen3
    return config.qk_norm


def _untied(config: LlamaConfig) -> bool:  # a tied model reads its logits off the embedding
    return not config.tie_word_embeddings


@dataclasses.dataclass(frozen=True)
class Weight:
    """One parameter. ``{i}`` in a file name is the layer index of a per-layer weight."""

    path: str  # in the Flax tree, e.g. "layers/attn/q_proj/kernel"
    axes: tuple[str, ...]  # logical axes: sizes from ``axis_sizes``, mesh axes from ``sharding.rules``
    hf: str  # tensor name in HF safetensors
    gguf: str  # tensor name in GGUF files
    init: Initializer = nn.initializers.normal(0.02)
    present: Callable[[LlamaConfig], bool] = _always
    # Files store a linear map as [out, in], Flax kernels are [in, out].
    transpose: bool = False
    # llama.cpp's llama converter interleaves the rotary halves of Q/K rows per head; the config
    # field counting those heads, so the GGUF loader can undo it (qwen converters keep HF's layout).
    rotary_heads: str | None = None

    @property
    def name(self) -> str:
        """The parameter's own name inside its module ("kernel", "scale", ...)."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def per_layer(self) -> bool:
        return self.axes[0] == "layers"

    def shape(self, config: LlamaConfig) -> tuple[int, ...]:
        sizes = axis_sizes(config)
        return tuple(sizes[axis] for axis in self.axes)

    def layer_shape(self, config: LlamaConfig) -> tuple[int, ...]:
        """The shape one module instance creates: per-layer weights without the scan's layer axis."""
        return self.shape(config)[1:] if self.per_layer else self.shape(config)


def _norm(path: str, hf: str, gguf: str, axes: tuple[str, ...] = ("layers", "embed"), **kw: Any) -> Weight:
    return Weight(path, axes, hf, gguf, init=nn.initializers.ones, **kw)


def _linear(path: str, axes: tuple[str, str], hf: str, gguf: str, **kw: Any) -> Weight:
    return Weight(f"{path}/kernel", ("layers", *axes), f"{hf}.weight", f"{gguf}.weight", transpose=True, **kw)


def _bias(path: str, axis: str, hf: str, gguf: str) -> Weight:
    return Weight(f"{path}/bias", ("layers", axis), f"{hf}.bias", f"{gguf}.bias",
                  init=nn.initializers.zeros_init(), present=_with_qkv_bias)


_ATTN, _MLP = f"{_HF_LAYER}.self_attn", f"{_HF_LAYER}.mlp"
WEIGHTS: tuple[Weight, ...] = (
    Weight("embed/embedding", ("vocab", "embed"), "model.embed_tokens.weight", "token_embd.weight"),
    _norm("layers/attn_norm/scale", f"{_HF_LAYER}.input_layernorm.weight", f"{_GGUF_LAYER}.attn_norm.weight"),
    _norm("layers/mlp_norm/scale", f"{_HF_LAYER}.post_attention_layernorm.weight", f"{_GGUF_LAYER}.ffn_norm.weight"),
    _linear("layers/attn/q_proj", ("embed", "q_heads"), f"{_ATTN}.q_proj", f"{_GGUF_LAYER}.attn_q",
            rotary_heads="num_heads"),
    _linear("layers/attn/k_proj", ("embed", "kv_heads"), f"{_ATTN}.k_proj", f"{_GGUF_LAYER}.attn_k",
            rotary_heads="num_kv_heads"),
    _linear("layers/attn/v_proj", ("embed", "kv_heads"), f"{_ATTN}.v_proj", f"{_GGUF_LAYER}.attn_v"),
    _linear("layers/attn/o_proj", ("q_heads", "embed"), f"{_ATTN}.o_proj", f"{_GGUF_LAYER}.attn_output"),
    _linear("layers/mlp/gate_proj", ("embed", "mlp"), f"{_MLP}.gate_proj", f"{_GGUF_LAYER}.ffn_gate"),
    _linear("layers/mlp/up_proj", ("embed", "mlp"), f"{_MLP}.up_proj", f"{_GGUF_LAYER}.ffn_up"),
    _linear("layers/mlp/down_proj", ("mlp", "embed"), f"{_MLP}.down_proj", f"{_GGUF_LAYER}.ffn_down"),
    _bias("layers/attn/q_proj", "q_heads", f"{_ATTN}.q_proj", f"{_GGUF_LAYER}.attn_q"),
    _bias("layers/attn/k_proj", "kv_heads", f"{_ATTN}.k_proj", f"{_GGUF_LAYER}.attn_k"),
    _bias("layers/attn/v_proj", "kv_heads", f"{_ATTN}.v_proj", f"{_GGUF_LAYER}.attn_v"),
    _norm("layers/attn/q_norm/scale", f"{_ATTN}.q_norm.weight", f"{_GGUF_LAYER}.attn_q_norm.weight",
          axes=("layers", "head_dim"), present=_with_qk_norm),
    _norm("layers/attn/k_norm/scale", f"{_ATTN}.k_norm.weight", f"{_GGUF_LAYER}.attn_k_norm.weight",
          axes=("layers", "head_dim"), present=_with_qk_norm),
    _norm("final_norm/scale", "model.norm.weight", "output_norm.weight", axes=("embed",)),
    Weight("lm_head/kernel", ("embed", "vocab"), "lm_head.weight", "output.weight", transpose=True,
           present=_untied),
)
BY_PATH: dict[str, Weight] = {weight.path: weight for weight in WEIGHTS}
LOGICAL_AXES: dict[str, tuple[str, ...]] = {weight.path: weight.axes for weight in WEIGHTS}


def axis_sizes(config: LlamaConfig) -> dict[str, int]:
    """What each logical axis counts; ``q_heads``/``kv_heads`` are heads x head_dim, as the projections hold them."""
    c = config
    return {
        "vocab": c.vocab_size, "embed": c.hidden_size, "layers": c.num_layers, "mlp": c.intermediate_size,
        "q_heads": c.num_heads * c.head_dim, "kv_heads": c.num_kv_heads * c.head_dim, "head_dim": c.head_dim,
    }


def weights_of(config: LlamaConfig) -> list[Weight]:
    """The rows this config's model has."""
    return [weight for weight in WEIGHTS if weight.present(config)]


def expected_paths(config: LlamaConfig) -> list[str]:
    return [weight.path for weight in weights_of(config)]


def has(path: str, config: LlamaConfig) -> bool:
    """Whether this config's model has the weight at ``path`` (e.g. q/k/v biases only for Qwen2)."""
    return path in BY_PATH and BY_PATH[path].present(config)


def create(module: nn.Module, path: str, config: LlamaConfig) -> jax.Array:
    """The parameter ``path`` of the table, declared in ``module`` (whose scope is the path's parent)
    with the table's name, per-layer shape and initialiser; kept in fp32 whatever the compute dtype."""
    weight = BY_PATH[path]
    return module.param(weight.name, weight.init, weight.layer_shape(config), jnp.float32)


def bits_view(params: Params, config: LlamaConfig) -> Params:
    """The same weights with each 16-bit float array on one CPU device viewed as its uint16 bits (no copy).

    A layer loop that slices a stacked bf16 weight makes XLA:CPU convert the whole stack to fp32 before
    the loop, a pass over every weight per call; a slice of the bits, bitcast back inside the loop, is
    multiplied as bf16 directly (``benchmarks/xla_cpu_bf16.py``: 7.3x faster for a few rows). The modules
    read either form (``compute_view``). Other backends, other dtypes and sharded arrays are returned as
    they are."""
    dtype = jnp.dtype(config.dtype)
    if dtype.itemsize != 2:
        return params

    def view(x: Any) -> Any:
        if not isinstance(x, jax.Array) or x.dtype != dtype or len(x.devices()) != 1:
            return x
        (device,) = x.devices()
        return jax.device_put(np.asarray(x).view(np.uint16), device) if device.platform == "cpu" else x

    return jax.tree.map(view, params)


def compute_view(value: jax.Array, config: LlamaConfig) -> jax.Array:
    """A weight as the model computes with it: ``bits_view``'s uint16 bits bitcast back to the config's dtype."""
    return jax.lax.bitcast_convert_type(value, jnp.dtype(config.dtype)) if value.dtype == jnp.uint16 else value


def from_tensors(read: Callable[[Weight, str], np.ndarray], file_name: Callable[[Weight], str],
                 config: LlamaConfig, dtype: str) -> Params:
    """The tree, on the host, from a checkpoint: ``read(weight, name)`` returns the named tensor as HF
    lays it out ([out, in] for linear maps); per-layer weights are stacked on a leading axis, linear
    maps transposed, everything cast to ``dtype``."""

    def tensor(weight: Weight, name: str) -> np.ndarray:
        value = read(weight, name)
        return value.T if weight.transpose else value

    flat = {}
    for weight in weights_of(config):
        name = file_name(weight)
        if weight.per_layer:
            value = np.stack([tensor(weight, name.format(i=i)) for i in range(config.num_layers)])
        else:
            value = tensor(weight, name)
        flat[weight.path] = np.asarray(value, np.float32).astype(jnp.dtype(dtype))
    return unflatten(flat)


def flatten(params: Params, prefix: str = "") -> dict[str, Any]:
    """{"layers/attn/q_proj/kernel": array, ...}: keyed by the table's paths."""
    flat = {}
    for name, value in params.items():
        path = f"{prefix}{name}"
        flat.update(flatten(value, f"{path}/") if isinstance(value, dict) else {path: value})
    return flat


def unflatten(flat: dict[str, Any]) -> Params:
    """The nested tree of ``flatten``'s output."""
    params: Params = {}
    for path, value in flat.items():
        *parents, name = path.split("/")
        node = params
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = value
    return params


def shape_mismatches(params: Params, config: LlamaConfig) -> list[str]:
    """Every weight that is missing, unexpected, or shaped unlike the config implies."""
    expected = {weight.path: weight.shape(config) for weight in weights_of(config)}
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
