"""benchmarks.roofline counts what the code runs: its weights, its full-prefill FLOPs, its kernel's pairs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import roofline
from benchmarks.llama_prefill import prefill_flops
from prophetkv_jax.model import attention, llama
from prophetkv_jax.model.config import tiny_config

CONFIG = tiny_config(num_layers=2, intermediate_size=96)


def test_linear_flops_are_two_per_weight_of_a_layer():
    params = llama.init_params(CONFIG, jax.random.PRNGKey(0))
    kernels = [x for path, x in jax.tree_util.tree_leaves_with_path(params["layers"])
               if "kernel" in jax.tree_util.keystr(path)]
    per_layer = sum(x.size for x in kernels) / CONFIG.num_layers
    assert roofline.linear_flops_per_row(CONFIG) == 2 * per_layer


def test_full_prefill_is_the_benchmarks_count_and_recompute_pairs_are_the_kernels():
    context = 2048
    table = roofline.phases(CONFIG, context, 256, 0.2, attention.ROW_GROUPS)
    assert table["full_prefill"].flops == prefill_flops(CONFIG, context, head_rows=1)
    rows, capacity = roofline.recompute_rows(context, 0.2)
    cache = llama.KVCache.empty(CONFIG, capacity)
    cache = dataclasses.replace(cache, positions=jnp.arange(capacity, dtype=jnp.int32),
                                valid=jnp.arange(capacity) < context)
    choose = llama.choose_kernel
    try:
        llama.choose_kernel = lambda *args, **kwargs: "cudnn_masked"  # the accelerator's recompute kernel
        _, prepared = llama.prepare_rows(cache, jnp.asarray(rows), -np.ones_like(rows), CONFIG)
    finally:
        llama.choose_kernel = choose
    visited = float(np.sum(np.asarray(prepared.key_lengths))) * len(rows) / attention.ROW_GROUPS
    linear = len(rows) * CONFIG.num_layers * roofline.linear_flops_per_row(CONFIG)
    per_pair = 4 * CONFIG.num_heads * CONFIG.head_dim * CONFIG.num_layers
    np.testing.assert_allclose(table["recompute"].flops, linear + visited * per_pair, rtol=1e-6)


def test_row_groups_bring_the_16k_estimate_near_the_causal_cost():
    dense = roofline.estimate(roofline.LLAMA_31_8B, 16384, 512, 0.2, "h100", 1)
    grouped = roofline.estimate(roofline.LLAMA_31_8B, 16384, 512, 0.2, "h100", attention.ROW_GROUPS)
    assert grouped["attended_pair_fraction"] <= 0.6 < dense["attended_pair_fraction"]
    assert grouped["ideal_s"]["recompute"] < dense["ideal_s"]["recompute"]
