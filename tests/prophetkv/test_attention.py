"""Blocked and few-rows attention against a dense NumPy reference: odd lengths, padding, scrambled slots."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from prophetkv_jax.model import attention
from prophetkv_jax.model.attention import blocked_attention, choose_kernel, fused_attention, mask_bias

HEADS, KV_HEADS, HEAD_DIM = 4, 2, 8


def dense_reference(q, k, v, row_pos, key_pos, key_valid, score_rows):
    """Softmax over the visible slots, per head, with GQA by repeating K/V; Stage-I scores."""
    group = HEADS // KV_HEADS
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    visible = (key_pos[None, :] <= row_pos[:, None]) & key_valid[None, :]
    logits = np.einsum("thd,shd->hts", q, k) / np.sqrt(HEAD_DIM)
    logits = np.where(visible[None], logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.einsum("hts,shd->thd", probs, v)
    return out, np.einsum("hts,t->s", probs, score_rows) / HEADS


@functools.partial(jax.jit, static_argnames=("block_rows", "block_keys", "few_rows"))
def blocked(q, k_stack, v_stack, row_pos, key_pos, key_valid, score_rows, block_rows, block_keys, few_rows=0):
    """The blocked path (``few_rows=0``) or, with ``few_rows`` >= the row count, the one-pass path."""
    return blocked_attention(q, k_stack, v_stack, 1, row_pos, key_pos, key_valid, score_rows, block_rows, block_keys,
                             few_rows)


def case(rows, slots, seed, scrambled):
    """Rows at distinct positions over a 2-layer cache; layer 1 holds the keys looked at."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(rows, HEADS, HEAD_DIM)).astype(np.float32)
    k, v = (rng.normal(size=(2, slots, KV_HEADS, HEAD_DIM)).astype(np.float32) for _ in range(2))
    key_pos = rng.permutation(slots) if scrambled else np.arange(slots)
    key_valid = rng.random(slots) < 0.85 if scrambled else np.arange(slots) < slots - 3
    row_pos = np.sort(rng.choice(slots, rows, replace=False))  # non-contiguous recomputed rows
    return q, k, v, row_pos.astype(np.int32), key_pos.astype(np.int32), key_valid


@pytest.mark.parametrize("rows, slots, block_rows, block_keys, scrambled", [
    (37, 101, 16, 32, False),  # odd lengths: one block each way
    (48, 128, 16, 32, False),  # 3 x 4 blocks, causal skipping of the upper blocks
    (48, 128, 16, 32, True),  # scrambled slots and holes: skipping by positions, not order
    (8, 128, 16, 32, True),  # fewer rows than a block: 64-slot key blocks
    (1, 96, 1, 32, False),  # a decode row at the first slot of a key block (sees only itself there)
])
@pytest.mark.parametrize("few_rows", [0, 128], ids=["blocked", "few-rows"])
def test_blocked_equals_dense(rows, slots, block_rows, block_keys, scrambled, few_rows):
    q, k, v, row_pos, key_pos, key_valid = case(rows, slots, rows + slots, scrambled)
    if rows == 1:
        row_pos[:] = 2 * block_keys
    score_rows = np.random.default_rng(0).random(rows).astype(np.float32)
    seen = ((key_pos[None, :] <= row_pos[:, None]) & key_valid[None, :]).any(1)
    out, scores = blocked(q, k, v, row_pos, key_pos, key_valid, score_rows, block_rows, block_keys, few_rows)
    ref_out, ref_scores = dense_reference(
        q, k[1], v[1], row_pos, key_pos, key_valid, np.where(seen, score_rows, 0)
    )
    np.testing.assert_allclose(np.asarray(out)[seen], ref_out[seen], atol=1e-5)
    np.testing.assert_allclose(np.asarray(scores), ref_scores, atol=1e-5)


@pytest.mark.parametrize("few_rows", [0, 128], ids=["blocked", "few-rows"])
def test_padding_rows_stay_finite_and_leave_real_rows_alone(few_rows):
    """A padding row (position 0, nothing visible) gives zeros, never NaN, and changes no real row."""
    q, k, v, row_pos, key_pos, key_valid = case(32, 64, 7, False)
    key_valid[0] = False  # a row at position 0 sees nothing
    padded_pos = np.concatenate([row_pos[:24], np.zeros(8, np.int32)])
    weights = (np.arange(32) < 24).astype(np.float32)
    out, scores = blocked(q, k, v, padded_pos, key_pos, key_valid, weights, 16, 16, few_rows)
    alone, alone_scores = blocked(q[:24], k, v, row_pos[:24], key_pos, key_valid, weights[:24], 8, 16, few_rows)
    assert np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(scores)).all()
    np.testing.assert_array_equal(np.asarray(out)[24:], 0.0)
    np.testing.assert_allclose(np.asarray(out)[:24], np.asarray(alone), atol=1e-6)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(alone_scores), atol=1e-6)


@pytest.mark.parametrize(
    ("backend", "dtype", "head_dim", "scores", "prefix", "cudnn", "expected"),
    [
        ("cpu", "bfloat16", 128, False, True, True, "blocked"),  # CPU keeps the blocked path
        ("gpu", "bfloat16", 128, False, True, True, "cudnn_causal"),  # full prefill
        ("gpu", "bfloat16", 128, False, False, True, "cudnn_masked"),  # recomputed rows
        ("gpu", "float16", 64, False, False, True, "cudnn_masked"),
        ("gpu", "bfloat16", 128, True, False, True, "blocked"),  # Stage I needs the probabilities
        ("gpu", "float32", 128, False, True, True, "blocked"),  # cuDNN has no fp32 kernel
        ("gpu", "bfloat16", 100, False, True, True, "blocked"),  # head_dim not a multiple of 8
        ("gpu", "bfloat16", 128, False, True, False, "blocked"),  # the cuDNN probe failed
        ("cuda", "bfloat16", 128, False, True, True, "cudnn_causal"),
        ("tpu", "bfloat16", 128, False, True, True, "xla_masked"),  # TPU: today's path
        ("tpu", "bfloat16", 128, True, False, True, "blocked"),
    ],
)
def test_kernel_choice(backend, dtype, head_dim, scores, prefix, cudnn, expected):
    assert choose_kernel(backend, dtype, head_dim, wants_scores=scores, causal_prefix=prefix, rows=1024,
                         cudnn_works=lambda *_: cudnn) == expected


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_few_rows_keep_the_one_pass_kernel(backend):
    """Decoding (1 row) and short recomputations take the few-rows path, not a fused kernel."""
    choose = lambda rows: choose_kernel(backend, "bfloat16", 128, wants_scores=False, causal_prefix=False,  # noqa: E731
                                        rows=rows, cudnn_works=lambda *_: True)
    assert choose(1) == choose(attention.FEW_ROWS) == "blocked" != choose(attention.FEW_ROWS + 1)


@pytest.fixture
def xla_for_cudnn(monkeypatch):
    """Run the cuDNN kernels' wiring (slicing, causal flag, bias) through XLA on this CPU."""
    monkeypatch.setattr(attention, "IMPLEMENTATION", dict.fromkeys(attention.IMPLEMENTATION, "xla"))


@pytest.mark.parametrize("kernel", ["cudnn_masked", "xla_masked"])
def test_masked_fused_kernels_see_the_same_slots(kernel, xla_for_cudnn):
    q, k, v, row_pos, key_pos, key_valid = case(48, 128, 5, True)
    seen = ((key_pos[None, :] <= row_pos[:, None]) & key_valid[None, :]).any(1)
    bias = mask_bias(row_pos, key_pos, key_valid, np.float32)
    out = jax.jit(fused_attention, static_argnames="kernel")(q, k[1], v[1], kernel, bias)
    ref_out, _ = dense_reference(q, k[1], v[1], row_pos, key_pos, key_valid, np.zeros(48, np.float32))
    np.testing.assert_allclose(np.asarray(out)[seen], ref_out[seen], atol=1e-5)


def test_causal_fused_kernel_reads_only_the_rows_own_slots(xla_for_cudnn):
    """Rows 0..T-1 over a longer cache: later slots (here non-zero garbage) must not leak in."""
    q, k, v, row_pos, key_pos, key_valid = case(64, 128, 3, False)
    out = jax.jit(fused_attention, static_argnames="kernel")(q, k[1], v[1], "cudnn_causal", None)
    ref_out, _ = dense_reference(q, k[1], v[1], np.arange(64), np.arange(128), np.ones(128, bool),
                                 np.zeros(64, np.float32))
    np.testing.assert_allclose(np.asarray(out), ref_out, atol=1e-5)


@pytest.mark.skipif(jax.default_backend() not in ("gpu", "cuda"), reason="needs a GPU with cuDNN")
@pytest.mark.parametrize("kernel", ["cudnn_causal", "cudnn_masked"])
def test_cudnn_kernels_equal_blocked_attention_on_the_gpu(kernel):
    rows, slots = 256, 512
    q, k, v, row_pos, key_pos, key_valid = case(rows, slots, 11, kernel == "cudnn_masked")
    if kernel == "cudnn_causal":
        row_pos, key_pos, key_valid = np.arange(rows), np.arange(slots), np.ones(slots, bool)
    q, k, v = (jax.numpy.asarray(x, jax.numpy.bfloat16) for x in (q, k, v))
    bias = mask_bias(row_pos, key_pos, key_valid, jax.numpy.bfloat16)
    out = jax.jit(fused_attention, static_argnames="kernel")(q, k[1], v[1], kernel, bias)
    ref, _ = blocked(q, k, v, row_pos, key_pos, key_valid, None, 64, 64)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=2e-2)


@pytest.mark.parametrize("scrambled", [False, True])
def test_row_groups_over_their_slot_prefixes_equal_the_dense_masked_kernel(scrambled, xla_for_cudnn):
    """Each group of 8 rows attends only up to the last slot it sees: the same outputs as every slot."""
    q, k, v, row_pos, key_pos, key_valid = case(64, 128, 9, scrambled)
    bias = mask_bias(row_pos, key_pos, key_valid, np.float32)
    lengths = attention.group_key_lengths(row_pos, key_pos, key_valid, attention.row_groups(64))
    assert lengths.shape == (8,) and (scrambled or int(lengths[0]) < 128)  # sorted rows: early groups stop short
    grouped = jax.jit(fused_attention, static_argnames="kernel")(q, k[1], v[1], "cudnn_masked", bias, lengths)
    dense = jax.jit(fused_attention, static_argnames="kernel")(q, k[1], v[1], "cudnn_masked", bias)
    np.testing.assert_allclose(np.asarray(grouped), np.asarray(dense), atol=1e-6)


def recompute_positions(context: int, ratio: float, query: int, seed: int = 0):
    """A ProphetKV recompute at ``context`` tokens: floor(p * C) scattered rows then the query, padded
    as the engine pads (rows to a shape bucket at position 0), over an assembled cache."""
    from prophetkv_jax.assembly import cache_capacity
    from prophetkv_jax.buckets import pad_rows

    c = context - query
    selected = np.sort(np.random.default_rng(seed).choice(c, int(ratio * c), replace=False))
    rows = np.concatenate([selected, np.arange(c, context)])
    _, row_pos, _ = pad_rows(rows, rows, rows, cache_capacity([], context + 16))
    capacity = cache_capacity([], context + 16)
    return row_pos, np.arange(capacity, dtype=np.int32), np.arange(capacity) < context


def test_the_recompute_visits_at_most_0_6_of_the_dense_pairs_at_16k():
    """The masked fused kernels at 16K, p = 0.2: row groups skip each group's unseen slot tail."""
    row_pos, key_pos, key_valid = recompute_positions(16384, 0.2, 50)
    groups = attention.row_groups(len(row_pos))
    assert attention.attended_fraction(row_pos, key_pos, key_valid, groups) <= 0.6
    assert attention.attended_fraction(row_pos, key_pos, key_valid, 1) > 0.98  # one group: the dense waste


def test_the_model_hands_the_masked_kernels_their_row_groups(monkeypatch):
    from prophetkv_jax.model import llama
    from prophetkv_jax.model.config import tiny_config

    config = tiny_config()
    monkeypatch.setattr(llama, "choose_kernel", lambda *args, **kwargs: "cudnn_masked")
    row_pos, key_pos, key_valid = recompute_positions(2048, 0.2, 50)
    cache = llama.KVCache.empty(config, len(key_pos))
    cache = dataclasses.replace(cache, positions=jax.numpy.asarray(key_pos), valid=jax.numpy.asarray(key_valid))
    _, rows = llama.prepare_rows(cache, jax.numpy.asarray(row_pos), -np.ones_like(row_pos), config)
    expected = attention.group_key_lengths(row_pos, key_pos, key_valid, attention.ROW_GROUPS)
    np.testing.assert_array_equal(np.asarray(rows.key_lengths), np.asarray(expected))
