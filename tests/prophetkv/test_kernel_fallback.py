"""The fused kernel is probed at the shapes a pass uses and falls back, on record, to blocked attention;
off CPU, Stage I's blocked attention is one program without a conditional per key block."""

import dataclasses

import jax
import numpy as np
import pytest

from prophetkv_jax import recompute
from prophetkv_jax.model import attention, llama
from prophetkv_jax.model.config import tiny_config


@pytest.fixture
def cudnn_refusing_long_keys(monkeypatch):
    """A fused kernel (XLA's, standing in for cuDNN on this CPU) that refuses more than 256 keys."""
    real = jax.nn.dot_product_attention

    def refusing(q, k, v, *args, **kwargs):
        if k.shape[1] > 256:
            raise RuntimeError("cuDNN: no execution plan for this shape")
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(attention, "IMPLEMENTATION", dict.fromkeys(attention.IMPLEMENTATION, "xla"))
    monkeypatch.setattr(jax.nn, "dot_product_attention", refusing)
    monkeypatch.setattr(attention, "_CHOSEN", {})  # this test's choices only, whatever ran before it


def choose(rows, slots, causal=False):
    return attention.choose_kernel("gpu", "bfloat16", 128, wants_scores=False, causal_prefix=causal, rows=rows,
                                   slots=slots, heads=32, kv_heads=8, cudnn_works=attention.fused_kernel_compiles)


def test_a_refusal_at_the_real_shape_falls_back_to_blocked_and_is_recorded(cudnn_refusing_long_keys):
    """A small shape compiles; the shape of a 16K recompute (3,328 rows x 16,384 keys, masked) is refused."""
    assert choose(256, 256) == "cudnn_masked" and choose(256, 256, causal=True) == "cudnn_causal"
    assert choose(3328, 16384) == "blocked"
    record = [k for k in attention.chosen_kernels() if (k["rows"], k["slots"]) == (3328, 16384)]
    assert record == [{"backend": "gpu", "dtype": "bfloat16", "rows": 3328, "slots": 16384, "stage_one": False,
                       "causal_prefix": False, "kernel": "blocked",
                       "fallback": "cudnn_masked refused at 3328 rows x 16384 slots; blocked attention instead"}]
    assert [k["fallback"] for k in attention.chosen_kernels() if (k["rows"], k["slots"]) == (256, 256)] == [None, None]


def test_the_model_falls_back_when_cudnn_refuses_its_pass(monkeypatch):
    """A 'GPU' pass whose cuDNN kernel does not compile here (no cuDNN on this CPU) runs blocked, with the
    same results as the CPU's own pass, and records why."""
    config = tiny_config(num_layers=2, dtype="bfloat16")
    params = llama.init_params(config, jax.random.PRNGKey(0))
    rows = 192  # more than FEW_ROWS: a fused kernel would be wanted
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, rows).astype(np.int32)
    positions = np.arange(rows, dtype=np.int32)

    def run(config):
        cache = llama.KVCache.empty(config, 256)
        logits, cache = llama.forward(params, tokens, positions, cache, positions, config)
        return np.asarray(logits, np.float32), np.asarray(cache.k, np.float32)

    expected = run(config)
    monkeypatch.setattr(attention, "platform", lambda: "gpu")
    gpu_config = dataclasses.replace(config, max_position_embeddings=config.max_position_embeddings + 1)  # own trace
    got = run(gpu_config)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    record = [k for k in attention.chosen_kernels() if k["backend"] == "gpu" and (k["rows"], k["slots"]) == (rows, 256)]
    assert [(k["kernel"], k["fallback"]) for k in record] == [
        ("blocked", "cudnn_masked refused at 192 rows x 256 slots; blocked attention instead")]


def lowered_stage_one(query_rows: int) -> str:
    """The StableHLO of ProphetKV's Stage I program for a query segment of ``query_rows`` rows."""
    config = tiny_config(num_layers=2)
    params = llama.init_params(config, jax.random.PRNGKey(0))
    cache = llama.KVCache.empty(config, 1024)
    q = np.arange(512, 512 + query_rows, dtype=np.int32)
    score_rows = np.ones(query_rows, np.float32)
    return recompute._stage_one_pick.lower(
        params, q % config.vocab_size, q, q, score_rows, cache, np.zeros(1024, np.int32), np.int32(0), np.int32(512),
        np.int32(100), np.int32(512 + query_rows), config, 512).as_text()


@pytest.mark.parametrize(("backend", "conditionals"), [("gpu", False), ("cpu", True)])
def test_long_stage_one_has_no_per_block_conditionals_off_cpu(backend, conditionals, monkeypatch):
    """Stage I over 256 query rows (past FEW_ROWS: the blocked loop): CPU skips unseen key blocks with a
    conditional each, an accelerator computes them all in one program."""
    monkeypatch.setattr(attention, "platform", lambda: backend)
    jax.clear_caches()  # a trace for the other backend must not be reused
    try:
        text = lowered_stage_one(256)
    finally:
        jax.clear_caches()
    assert ("stablehlo.case" in text or "stablehlo.if" in text) == conditionals
