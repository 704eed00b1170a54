"""Run by test_sharding.py in a subprocess with 8 fake CPU devices: sharded vs unsharded engine, as JSON.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=8 python sharding_worker.py KV_HEADS [KV_HEADS ...]
"""

import json
import sys

import jax
import numpy as np

from prophetkv_jax.model import llama, sharding
from prophetkv_jax.model.config import tiny_config
from prophetkv_jax.pipeline import Engine, RagPrompt

METHODS = ("full", "prophetkv")


def padded_spec(array) -> list | str:
    """The array's PartitionSpec padded to its rank, or what it has instead of a NamedSharding."""
    if not hasattr(array.sharding, "spec"):
        return type(array.sharding).__name__
    spec = tuple(array.sharding.spec)
    return list(spec + (None,) * (array.ndim - len(spec)))


def compare(kv_heads: int) -> dict:
    config = tiny_config(num_heads=8, num_kv_heads=kv_heads, head_dim=8, intermediate_size=128)
    params = llama.init_params(config, jax.random.PRNGKey(kv_heads))
    split = sharding.place_params(params, config, 8)
    rng = np.random.default_rng(kv_heads)
    tokens = lambda n: rng.integers(0, config.vocab_size, n)  # noqa: E731
    prompt = RagPrompt(prefix=tokens(8), chunks=(tokens(40), tokens(40), tokens(30)), query=tokens(10))
    one, eight = Engine(params, config, max_new_tokens=4), Engine(split, config, max_new_tokens=4)
    out = {"q_proj": padded_spec(split["layers"]["attn"]["q_proj"]["kernel"]),
           "k_proj": padded_spec(split["layers"]["attn"]["k_proj"]["kernel"]), "methods": {},
           "placed_cache": padded_spec(eight._placed(llama.KVCache.empty(config, 64)).k)}
    for method in METHODS:
        a, b = one.prefill(prompt, method, 0.2), eight.prefill(prompt, method, 0.2)
        out["methods"][method] = {
            "logit_gap": float(np.abs(a.last_logits - b.last_logits).max()),
            "selected": [a.selected.tolist(), b.selected.tolist()],
            "cache_spec": padded_spec(b.cache.k), "devices": len(b.cache.k.sharding.device_set),
        }
    out["methods"]["prophetkv"]["greedy"] = [one.generate(a, 4), eight.generate(b, 4)]
    short = RagPrompt(prefix=tokens(4), chunks=(tokens(20),), query=tokens(5))  # every slot but 0 is cleared
    out["recycled"] = {}
    for method in METHODS:
        released = eight.prefill(short, method, 0.2)
        eight.release(released)
        again, reference = eight.prefill(short, method, 0.2), one.prefill(short, method, 0.2)
        out["recycled"][method] = {
            "reused": released.cache.k.is_deleted(), "cache_spec": padded_spec(again.cache.k),
            "logit_gap": float(np.abs(again.last_logits - reference.last_logits).max()),
        }
    return out


if __name__ == "__main__":
    print(json.dumps({kv: compare(int(kv)) for kv in sys.argv[1:]}))
