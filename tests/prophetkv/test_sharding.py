"""Tensor-parallel sharding: the rules, the flag, and 8 fake devices giving the unsharded results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from jax.sharding import PartitionSpec as P

from prophetkv_jax import evaluation
from prophetkv_jax.model import llama, sharding
from prophetkv_jax.model.config import LlamaConfig, tiny_config

LLAMA_8B = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
                       num_heads=32, num_kv_heads=8, head_dim=128)


@pytest.fixture(scope="module")
def eight_devices():
    """The worker's JSON for 8 KV heads (they divide 8 devices) and 2 (they do not), in one subprocess."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("sharding_worker.py")), "8", "2"],
                            capture_output=True, text=True, env=env, timeout=900, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_megatron_rules_on_the_paper_model():
    """q/k/v/gate/up split by columns, o/down by rows, vocab split; 2 KV heads on 8 devices are replicated."""
    assert sharding.rules(LLAMA_8B, 8) == {"q_heads": "model", "kv_heads": "model", "mlp": "model", "vocab": "model"}
    assert sharding.rules(LLAMA_8B, 16)["kv_heads"] is None and sharding.rules(LLAMA_8B, 1)["q_heads"] is None
    config = tiny_config(num_heads=8, num_kv_heads=2, head_dim=8, intermediate_size=128)
    shapes = jax.eval_shape(lambda key: llama.init_params(config, key), jax.random.PRNGKey(0))  # no compile
    specs = sharding.param_specs(shapes, config, 8)
    attn, mlp = specs["layers"]["attn"], specs["layers"]["mlp"]
    assert attn["q_proj"]["kernel"] == P(None, None, "model") and attn["o_proj"]["kernel"] == P(None, "model", None)
    assert attn["k_proj"]["kernel"] == attn["v_proj"]["kernel"] == P(None, None, None)
    assert mlp["up_proj"]["kernel"] == mlp["gate_proj"]["kernel"] == P(None, None, "model")
    assert mlp["down_proj"]["kernel"] == P(None, "model", None)
    assert specs["embed"]["embedding"] == P("model", None) and specs["lm_head"]["kernel"] == P(None, "model")
    assert sharding.cache_specs(config, 8).k == P(None, None, None, None)
    assert sharding.cache_specs(LLAMA_8B, 8).v == P(None, None, "model", None)


class FakeAccelerator:
    platform = "gpu"

    def __init__(self, gigabytes: float) -> None:
        self.limit = int(gigabytes * 2**30)

    def memory_stats(self) -> dict:
        return {"bytes_limit": self.limit}


def test_automatic_size_splits_only_weights_that_do_not_fit():
    """A 28 GB bf16 14B model: 1 device of 80 GB, 2 of 24 GB, 4 of 16 GB (weights <= 70% of memory); CPU 1."""
    weights = 28 * 2**30
    assert sharding.auto_size(weights, [FakeAccelerator(80)] * 8) == 1
    assert sharding.auto_size(weights, [FakeAccelerator(24)] * 8) == 2  # 28 GB <= 0.7 * 2 * 24 GB
    assert sharding.auto_size(weights, [FakeAccelerator(16)] * 8) == 4
    assert sharding.auto_size(weights, [FakeAccelerator(16)] * 2) == 2  # never more than there are
    assert sharding.auto_size(weights, jax.devices("cpu")) == 1


@pytest.mark.parametrize("value", ["model=0", "data=2", "model=x", "8"])
def test_bad_mesh_flag_is_one_line_naming_it(value, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluation.parse_args(["--task", "ruler", "--mesh", value])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and f"--mesh '{value}'" in err, err


def test_mesh_flag_values_and_too_many_devices():
    assert evaluation.parse_args(["--task", "ruler", "--mesh", "model=4"]).mesh == 4
    assert evaluation.parse_args(["--task", "ruler"]).mesh is None  # auto
    with pytest.raises(ValueError, match="--mesh model=64: only 1 cpu device"):
        sharding.make_mesh(64, jax.devices("cpu")[:1])


@pytest.mark.slow
@pytest.mark.parametrize("kv_heads", ["8", "2"])
def test_eight_devices_give_the_unsharded_logits_and_selection(eight_devices, kv_heads):
    case = eight_devices[kv_heads]
    assert case["q_proj"] == [None, None, "model"]  # the weights really are split
    assert case["k_proj"] == ([None, None, "model"] if kv_heads == "8" else [None, None, None])
    cache_spec = [None, None, "model", None] if kv_heads == "8" else [None] * 4
    assert case["placed_cache"] == cache_spec  # as the engine places a new cache, before any jit
    for method, run in case["methods"].items():
        assert run["logit_gap"] <= 1e-5, method
        assert run["selected"][0] == run["selected"][1], method
        assert run["devices"] == 8
        assert run["cache_spec"] == cache_spec, method
    greedy = case["methods"]["prophetkv"]["greedy"]  # decoding from the blended, sharded cache
    assert greedy[0] == greedy[1] and len(greedy[0]) == 4
    for method, run in case["recycled"].items():  # a released sharded cache is reused in place
        assert run == {**run, "reused": True, "cache_spec": cache_spec} and run["logit_gap"] <= 1e-5, method
