"""A train step sharded over 4 (fake CPU) devices equals the same step on 1 device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json
import jax, numpy as np
from cea_jax.configs import get_config
from jax.sharding import NamedSharding, PartitionSpec as P
from cea_jax.train_lib import TrainConfig, make_mesh, shard_batch, state_initializer, train_step_fn

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
print("RESULT" + json.dumps(out))
"""


def test_four_device_step_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    one, four = result["one"], result["four"]
    assert four["replicated"] and one["replicated"]
    np.testing.assert_allclose(four["losses"], one["losses"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(four["params"], one["params"], atol=1e-5, rtol=0)
    # The step did move the parameters (the comparison is not between two initialisations).
    assert one["losses"][0] != one["losses"][1]
