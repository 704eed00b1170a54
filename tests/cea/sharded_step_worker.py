"""Run by test_train_sharded.py with 4 fake CPU devices: two train steps on 1 and on 4 devices, as JSON.

The device count must be set before JAX starts, hence a process of its own.
Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu python sharded_step_worker.py
"""

import json

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cea_jax.configs import get_config
from cea_jax.train_lib import TrainConfig, make_mesh, shard_batch, state_initializer, train_step_fn


def compare() -> dict:
    """Losses, final parameters and their replication after the same two steps on each mesh."""
    assert jax.device_count() == 4, jax.devices()
    model = get_config("tiny", "cea", dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0, rank=2)
    config = TrainConfig(batch_size=4, crop=32, lr=1e-3)
    rng = np.random.default_rng(0)
    batches = [{"degraded": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
                "clean": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
                "task": np.arange(4, dtype=np.int32)} for _ in range(2)]
    meshes = {"one": make_mesh(jax.devices()[:1]), "four": make_mesh(jax.devices())}
    initial = state_initializer(model, config, meshes["one"])[1]()
    # The same initial state, replicated over 4 devices (a copy: the step donates its input).
    host_copy = jax.tree.map(np.asarray, initial)
    states = {"one": initial, "four": jax.device_put(host_copy, NamedSharding(meshes["four"], P()))}
    out = {}
    for name, mesh in meshes.items():
        state = states[name]
        step = train_step_fn(model, config, mesh)
        losses = []
        for batch in batches:
            sharded = shard_batch(batch, mesh)
            if name == "four":
                assert len(sharded["degraded"].sharding.device_set) == 4
            state, metrics = step(state, sharded)
            losses.append(float(metrics["loss"]))
        leaves = [np.asarray(x).ravel() for x in jax.tree.leaves(state["params"])]
        out[name] = {"losses": losses, "params": np.concatenate(leaves).tolist(),
                     "replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state["params"]))}
    return out


if __name__ == "__main__":
    print(json.dumps(compare()))
