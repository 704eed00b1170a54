"""The ProphetKV engine on a tiny random Llama: assembly, the shared kernel, every method."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prophetkv_jax import assembly, recompute, selectors
from prophetkv_jax.buckets import bucket_size
from prophetkv_jax.decode import greedy_decode_batch
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import RopeScaling, tiny_config
from prophetkv_jax.pipeline import Engine, RagPrompt
from prophetkv_jax.store import ChunkStore, SegmentKV, chunk_key

CONFIG = tiny_config(num_layers=3, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 64))
RECOMPUTING = ("cacheblend", "epic", "kvshare", "prophetkv")


@pytest.fixture(scope="module")
def params():
    return llama.init_params(CONFIG, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def engine(params):
    return Engine(params, CONFIG, max_new_tokens=8)


def make_prompt(seed: int = 0) -> RagPrompt:
    rng = np.random.default_rng(seed)
    tokens = lambda n: rng.integers(0, CONFIG.vocab_size, n)  # noqa: E731
    return RagPrompt(prefix=tokens(6), chunks=(tokens(13), tokens(9), tokens(11)), query=tokens(5))


def full_prefill(params, tokens):
    cache = llama.KVCache.empty(CONFIG, bucket_size(len(tokens)))
    logits, cache = recompute.recompute_rows(params, CONFIG, cache, tokens, np.arange(len(tokens)))
    return np.asarray(logits), cache


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_assembled_layer0_kv_equals_full_prefill(params, dtype):
    """Layer-0 K/V depend on the token alone, so assembly must reproduce full prefill's: keys are
    stored before RoPE (never rotated and un-rotated) and rotated once, in fp32 math."""
    config = dataclasses.replace(CONFIG, dtype=dtype)
    engine = Engine(params, config, max_new_tokens=8)
    layout = engine.layout(make_prompt())
    cache = llama.KVCache.empty(config, assembly.cache_capacity([len(s) for s in layout.segments[:-1]], layout.total))
    _, full = recompute.recompute_rows(params, config, cache, layout.tokens(), np.arange(layout.total))
    segments = [engine.segment_kv(s) for s in layout.segments[:-1]]
    assert {s.dtype for s in segments} == {dtype}  # a bf16 model's entries are bf16 end to end
    assembled = assembly.assemble(config, segments, full.capacity)
    c = layout.num_context
    assert assembled.k.dtype == full.k.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(assembled.v[0, :c]), np.asarray(full.v[0, :c]))
    # The same pre-RoPE key rotated by the same fp32 math (XLA may fuse it differently: 1e-7 in fp32,
    # where the old un-rotate/rotate round trip cost 2e-6; nothing that survives rounding to bf16).
    k, k_full = np.asarray(assembled.k[0, :c], np.float32), np.asarray(full.k[0, :c], np.float32)
    np.testing.assert_allclose(k, k_full, rtol=0, atol=1e-7 if dtype == "float32" else 0)
    # A twice-rotated key (the bug the paper warns about) would be far off.
    twice = llama.apply_rope(assembled.k[0], llama.rope_tables(jnp.arange(assembled.capacity), config))
    assert np.abs(np.asarray(twice[6:c], np.float32) - np.asarray(full.k[0, 6:c], np.float32)).max() > 1e-2
    np.testing.assert_array_equal(np.asarray(assembled.valid), np.arange(assembled.capacity) < c)


def test_new_chunk_lengths_compile_nothing_when_assembling(engine):
    """Assembly runs inside TTFT: chunk lengths that vary within a shape bucket reuse its compiles."""
    compiles = []

    def count(event, duration, **kwargs):
        if event.endswith("backend_compile_duration"):
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        rng, recycled = np.random.default_rng(3), None
        for lengths in ((13, 9, 11), (12, 10, 7), (5, 14, 3)):  # all inside the 64-row bucket
            segments = [engine.segment_kv(rng.integers(0, CONFIG.vocab_size, n)) for n in lengths]
            compiles.clear()
            capacity = assembly.cache_capacity(list(lengths), sum(lengths))
            assembly.assemble(CONFIG, segments, capacity)
            recycled = assembly.assemble(CONFIG, segments, capacity, recycle=recycled)  # the engine's path
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert compiles == []
    segments = [engine.segment_kv(rng.integers(0, CONFIG.vocab_size, n)) for n in (13, 9, 11)]
    with pytest.raises(ValueError, match="reach slot 86 with their padding, but the cache capacity is 64"):
        assembly.assemble(CONFIG, segments, 64)  # refused, never silently grown past the caller's size


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_recycled_cache_assembles_bit_for_bit_like_a_new_one(params, dtype):
    """A finished cache full of NaN, handed back, gives exactly the new cache's contents: every
    slot past the segments is cleared, so nothing stale can reach a masked attention product."""
    config = dataclasses.replace(CONFIG, dtype=dtype)
    engine = Engine(params, config, max_new_tokens=8)
    layout = engine.layout(make_prompt())
    segments = [engine.segment_kv(s) for s in layout.segments[:-1]]
    capacity = assembly.cache_capacity([s.length for s in segments], 300)
    new = assembly.assemble(config, segments, capacity)
    shape = (config.num_layers, capacity, config.num_kv_heads, config.head_dim)
    stale = llama.KVCache(k=jnp.full(shape, jnp.nan, dtype), v=jnp.full(shape, jnp.nan, dtype),
                          positions=jnp.full((capacity,), 7, jnp.int32), valid=jnp.ones((capacity,), bool))
    recycled = assembly.assemble(config, segments, capacity, recycle=stale)
    assert stale.k.is_deleted()  # its memory became the new cache
    for name in ("k", "v", "positions", "valid"):
        bits = lambda cache: np.asarray(assembly._as_bits(getattr(cache, name)))  # noqa: E731
        same = bits(recycled) == bits(new)
        assert same.all(), f"{name} differs from a new cache's in {int((~same).sum())} places"
    with pytest.raises(ValueError, match=f"cannot recycle a cache of {capacity * 2} slots as one of {capacity}"):
        assembly.assemble(config, segments, capacity, recycle=llama.KVCache.empty(config, capacity * 2))
    other = "float32" if dtype == "bfloat16" else "bfloat16"
    with pytest.raises(ValueError, match=f"cannot recycle a cache of K/V .* {other} for a model whose caches are"):
        assembly.assemble(config, segments, capacity, recycle=llama.KVCache.empty(config, capacity, jnp.dtype(other)))


def test_released_caches_are_reused_and_give_the_same_results(params):
    """Engine.release hands a request's memory to the next request of that capacity; full prefill
    and assembly from it (made all NaN here) give what new memory gives, and the pool keeps at
    most its byte bound."""
    fresh, reusing = Engine(params, CONFIG, max_new_tokens=8), Engine(params, CONFIG, max_new_tokens=8)
    prompt = make_prompt()
    for method in ("full", "prophetkv", "naive"):
        expected = fresh.prefill(prompt, method, 0.5)
        first = reusing.prefill(prompt, method, 0.5)
        reusing.release(first, first)  # twice: held once
        assert len(reusing._spares) == 1
        spare = reusing._spares[0]
        poisoned = reusing._spares[0] = dataclasses.replace(spare, k=spare.k * jnp.nan, v=spare.v * jnp.nan)
        again = reusing.prefill(prompt, method, 0.5)
        assert reusing._spares == [] and poisoned.k.is_deleted()  # its memory holds the new cache
        np.testing.assert_array_equal(again.last_logits, expected.last_logits)
        for name in ("k", "v", "positions", "valid"):
            np.testing.assert_array_equal(np.asarray(getattr(again.cache, name)),
                                          np.asarray(getattr(expected.cache, name)))
    released = reusing.prefill(prompt, "naive")
    reusing.release(released)
    reusing.prefill(prompt, "naive")
    assert released.cache.k.is_deleted()  # its memory holds the new request's cache
    with pytest.raises(ValueError, match="handed back with Engine.release and reused; prefill again"):
        reusing.generate(released, 2)
    caches = [reusing.prefill(prompt, "naive") for _ in range(4)]
    one = caches[0].cache.k.nbytes + caches[0].cache.v.nbytes
    reusing.max_spare_bytes = int(2.5 * one)
    reusing.release(*caches)
    assert [c.k for c in reusing._spares] == [c.cache.k for c in caches[2:]]  # the newest two
    with pytest.raises(ValueError, match="cannot recycle a cache of K/V .* for a model whose caches are"):
        Engine(params, dataclasses.replace(CONFIG, num_layers=2), max_new_tokens=8).release(caches[0])


@pytest.mark.parametrize("method", RECOMPUTING)
def test_full_ratio_reproduces_full_prefill(engine, params, method):
    prompt = make_prompt()
    layout = engine.layout(prompt)
    reference, full_cache = full_prefill(params, layout.tokens())
    result = engine.prefill(prompt, method, 1.0)
    np.testing.assert_allclose(result.last_logits, reference[-1], atol=1e-4)
    n = layout.total
    for name in ("k", "v"):
        np.testing.assert_allclose(
            np.asarray(getattr(result.cache, name)[:, :n]), np.asarray(getattr(full_cache, name)[:, :n]), atol=1e-4
        )
    assert result.first_token == int(np.argmax(reference[-1]))


def test_full_method_matches_plain_prefill(engine, params):
    prompt = make_prompt()
    reference, _ = full_prefill(params, engine.layout(prompt).tokens())
    np.testing.assert_allclose(engine.prefill(prompt, "full").last_logits, reference[-1], atol=1e-5)


@pytest.mark.parametrize("method", RECOMPUTING)
def test_zero_ratio_is_naive_reuse(engine, method):
    prompt = make_prompt()
    naive = engine.prefill(prompt, "naive", 0.2)
    result = engine.prefill(prompt, method, 0.0)
    assert result.selected.size == 0
    np.testing.assert_allclose(result.last_logits, naive.last_logits, atol=1e-5)


def test_naive_reuse_differs_from_full_prefill(engine):
    """The gap recomputation closes exists (otherwise the tests above prove nothing)."""
    prompt = make_prompt()
    assert np.abs(engine.prefill(prompt, "naive").last_logits - engine.prefill(prompt, "full").last_logits).max() > 1e-3


def test_every_method_gets_one_cache_capacity_so_their_answers_decode_together(engine):
    """The last chunk's padding rows reach slot 92 here, past the 64 slots the prompt and the
    answer need: full prefill's cache must be as large as the assembled ones."""
    prompt = make_prompt()
    results = [engine.prefill(prompt, m) for m in selectors.METHODS]
    layout = engine.layout(prompt)
    assert assembly.padded_end([len(s) for s in layout.segments[:-1]]) > bucket_size(layout.total + 8)
    assert {r.cache.capacity for r in results} == {results[0].cache.capacity}
    outputs = greedy_decode_batch(engine.params, CONFIG, [r.cache for r in results],
                                  [r.last_logits for r in results], [r.next_position for r in results], 3)
    assert len(outputs) == len(results)


@pytest.mark.parametrize("method", RECOMPUTING)
def test_selected_set_has_the_budget_and_lies_in_the_context(engine, method):
    result = engine.prefill(make_prompt(), method, 0.3)
    assert len(result.selected) == selectors.budget(0.3, result.num_context)
    assert np.all(np.diff(result.selected) > 0)
    assert result.selected.max() < result.num_context


def test_recomputed_row_ignores_later_keys(engine, params):
    """Exact causal mask from global positions: changing later slots cannot move a row."""
    layout = engine.layout(make_prompt())
    tokens = layout.tokens()
    segments = [engine.segment_kv(s) for s in layout.segments[:-1]]
    cache = assembly.assemble(CONFIG, segments, assembly.cache_capacity([s.length for s in segments], layout.total))
    rows = np.array([3, 10, 20, 30])
    row = 1  # position 10

    def logits_of(c):
        return np.asarray(recompute.recompute_rows(params, CONFIG, c, tokens[rows], rows)[0][row])

    base = logits_of(cache)
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(1), cache.k.shape))
    later = (np.arange(cache.capacity) > 10)[None, :, None, None]
    earlier = (np.arange(cache.capacity) < 10)[None, :, None, None]
    perturb = lambda where: cache.__class__(  # noqa: E731
        k=cache.k + noise * where, v=cache.v + noise * where, positions=cache.positions, valid=cache.valid
    )
    np.testing.assert_array_equal(logits_of(perturb(later)), base)
    assert np.abs(logits_of(perturb(earlier)) - base).max() > 1e-3


# ----------------------------------------------------------------------------- Stage I vs numpy


def _rms(x, scale):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + CONFIG.rms_norm_eps) * scale


def _rope(x, positions):
    angles = positions[:, None] * llama.rope_inv_freq(CONFIG)[None, :].astype(np.float64)
    cos, sin = np.cos(np.concatenate([angles] * 2, -1)), np.sin(np.concatenate([angles] * 2, -1))
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos[:, None] + rotated * sin[:, None]


def numpy_stage_one(params, cache_k, cache_v, context, tokens, positions):
    """Query rows through every layer against the (un-recomputed) context cache, in float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    heads, kv, hd = CONFIG.num_heads, CONFIG.num_kv_heads, CONFIG.head_dim
    h = p["embed"]["embedding"][tokens]
    per_layer = []
    for layer in range(CONFIG.num_layers):
        lp = jax.tree.map(lambda a: a[layer], p["layers"])
        x = _rms(h, lp["attn_norm"]["scale"])
        q = _rope((x @ lp["attn"]["q_proj"]["kernel"]).reshape(-1, heads, hd), positions)
        k = _rope((x @ lp["attn"]["k_proj"]["kernel"]).reshape(-1, kv, hd), positions)
        v = (x @ lp["attn"]["v_proj"]["kernel"]).reshape(-1, kv, hd)
        keys = np.concatenate([cache_k[layer, :context], k])
        values = np.concatenate([cache_v[layer, :context], v])
        key_pos = np.concatenate([np.arange(context), positions])
        scores_sum = np.zeros(len(keys))
        out = np.zeros((len(tokens), heads, hd))
        for head in range(heads):
            g = head // (heads // kv)
            logits = q[:, head] @ keys[:, g].T / np.sqrt(hd)
            logits = np.where(key_pos[None] <= positions[:, None], logits, -np.inf)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            out[:, head] = probs @ values[:, g]
            scores_sum += probs.sum(0)
        per_layer.append(scores_sum[:context] / heads)
        h = h + out.reshape(len(tokens), -1) @ lp["attn"]["o_proj"]["kernel"]
        x = _rms(h, lp["mlp_norm"]["scale"])
        gate = x @ lp["mlp"]["gate_proj"]["kernel"]
        h = h + (gate / (1 + np.exp(-gate)) * (x @ lp["mlp"]["up_proj"]["kernel"])) @ lp["mlp"]["down_proj"]["kernel"]
    return np.stack(per_layer)


def test_stage_one_scores_match_numpy(engine, params):
    layout = engine.layout(make_prompt(3))
    tokens, c = layout.tokens(), layout.num_context
    segments = [engine.segment_kv(s) for s in layout.segments[:-1]]
    cache = assembly.assemble(CONFIG, segments, assembly.cache_capacity([s.length for s in segments], layout.total))
    query = np.arange(c, layout.total)
    scores, _, _ = recompute.query_attention(params, CONFIG, cache, tokens[c:], query, score_from=c)
    k64, v64 = np.asarray(cache.k, np.float64), np.asarray(cache.v, np.float64)
    expected = numpy_stage_one(params, k64, v64, c, tokens[c:], query)
    np.testing.assert_allclose(scores[:, :c], expected, atol=1e-5)
    # query rows spend the rest of their attention on themselves: per layer, context + query = |query|
    assert np.all(scores[:, :c].sum(1) < len(query))


# ----------------------------------------------------------------------------- pipeline API


def test_generate_after_full_ratio_matches_full_prefill(engine):
    prompt = make_prompt(4)
    full = engine.generate(engine.prefill(prompt, "full"), 6)
    prophet = engine.generate(engine.prefill(prompt, "prophetkv", 1.0), 6)
    assert full == prophet and len(full) == 6


def test_generate_leaves_the_prefill_cache_usable(engine):
    """Decoding donates an internal copy: the caller's prefill (used again by evaluation) survives."""
    result = engine.prefill(make_prompt(7), "prophetkv", 0.3)
    k_before = np.asarray(result.cache.k)
    first = engine.generate(result, 6)
    assert engine.generate(result, 6) == first
    np.testing.assert_array_equal(np.asarray(result.cache.k), k_before)


def test_diagnose_reports_overlap_with_oracle(engine):
    report = engine.diagnose(make_prompt(5), 0.25)
    k = selectors.budget(0.25, engine.layout(make_prompt(5)).num_context)
    assert len(report["oracle"]) == k
    for method in RECOMPUTING:
        assert 0.0 <= report[method]["oracle_overlap"] <= 1.0
        assert len(report[method]["selected"]) == k


def test_bad_method_and_ratio_are_refused(engine):
    with pytest.raises(ValueError, match="unknown method"):
        engine.prefill(make_prompt(), "magic")
    with pytest.raises(ValueError, match="recompute ratio"):
        engine.prefill(make_prompt(), "prophetkv", 1.2)


def test_corrupt_store_entry_is_recomputed(params, tmp_path):
    prompt = make_prompt(6)
    first = Engine(params, CONFIG, ChunkStore(tmp_path), max_new_tokens=8)
    first.precompute(prompt)
    expected = first.prefill(prompt, "naive").last_logits
    for path in tmp_path.glob("*/*.safetensors"):
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x55
        path.write_bytes(bytes(data))
    second = Engine(params, CONFIG, ChunkStore(tmp_path), max_new_tokens=8)
    np.testing.assert_allclose(second.prefill(prompt, "naive").last_logits, expected, atol=1e-6)


def test_a_stored_entry_that_does_not_fit_the_model_is_recomputed_not_served(params, tmp_path):
    """An entry under the right key but of the wrong shape (e.g. written by a buggy or older
    writer) must never reach the cache: the engine refuses it and encodes the chunk again."""
    prompt = make_prompt(7)
    clean = Engine(params, CONFIG, max_new_tokens=8)
    expected = clean.prefill(prompt, "naive").last_logits
    store = ChunkStore(tmp_path)
    engine = Engine(params, CONFIG, store, max_new_tokens=8)
    chunk = np.asarray(prompt.chunks[0], np.int32)
    key = chunk_key(engine.fingerprint, chunk, False, engine.store_dtype)
    good = clean.segment_kv(chunk)
    store.put(key, SegmentKV(good.k[:, :, :1], good.v[:, :, :1], good.length))  # one KV head missing
    np.testing.assert_allclose(engine.prefill(prompt, "naive").last_logits, expected, atol=1e-6)
    assert engine.segment_kv(chunk).k.shape == good.k.shape


def test_fused_kernels_wired_into_the_model_give_the_blocked_results(params, monkeypatch):
    """The accelerator kernels (run through XLA here) in every pass: full prefill (causal over rows
    0..T-1), the recompute kernel and CacheBlend's layer split (masked); Stage I stays blocked."""
    from prophetkv_jax.model import attention

    # Two configs equal but for an unused field: each traces afresh (no compiled program is shared).
    config, fused_config = (dataclasses.replace(CONFIG, max_position_embeddings=CONFIG.max_position_embeddings + i)
                            for i in (1, 2))
    prompt, methods = make_prompt(8), ("full", "cacheblend", "prophetkv")
    blocked = Engine(params, config, max_new_tokens=8)
    expected = {m: blocked.prefill(prompt, m, 0.3) for m in methods}
    chosen = []

    def accelerator_choice(backend, dtype, head_dim, *, wants_scores, causal_prefix, **shape):
        kernel = "blocked" if wants_scores else ("cudnn_causal" if causal_prefix else "cudnn_masked")
        chosen.append(kernel)
        return kernel

    monkeypatch.setattr(attention, "IMPLEMENTATION", dict.fromkeys(attention.IMPLEMENTATION, "xla"))
    monkeypatch.setattr(llama, "choose_kernel", accelerator_choice)
    fused = Engine(params, fused_config, max_new_tokens=8)
    for method in methods:
        result = fused.prefill(prompt, method, 0.3)
        np.testing.assert_array_equal(result.selected, expected[method].selected)
        np.testing.assert_allclose(result.last_logits, expected[method].last_logits, atol=2e-5)
    assert {"cudnn_causal", "cudnn_masked", "blocked"} <= set(chosen)
