"""Selections pinned against an independent float64 NumPy Llama written here from the weights.

Each method's recomputed set must equal the top-k of its own score computed from scratch:
ProphetKV's Stage I (the query's layer-mean attention over the assembled cache), CacheBlend's
layer-1 V deviation, KVShare's layer-1 attention column sums times the V deviation. A planted
needle with the default model checks that ProphetKV finds what the query asks for.
"""

import jax
import numpy as np
import pytest

from prophetkv_jax.model import llama
from prophetkv_jax.model.config import tiny_config
from prophetkv_jax.pipeline import Engine, RagPrompt

CONFIG = tiny_config(num_layers=3)


# ----------------------------------------------------------------------------- NumPy Llama


def layer_weights(params, index: int) -> dict[str, np.ndarray]:
    """One layer's matrices as float64 arrays (kernels are [in, out])."""
    layer = jax.tree.map(lambda x: np.asarray(x[index], np.float64), params["layers"])
    return {"attn_norm": layer["attn_norm"]["scale"], "mlp_norm": layer["mlp_norm"]["scale"],
            **{name: layer["attn"][name]["kernel"] for name in ("q_proj", "k_proj", "v_proj", "o_proj")},
            **{name: layer["mlp"][name]["kernel"] for name in ("gate_proj", "up_proj", "down_proj")}}


def rms_norm(x, scale, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def rotate(x, positions, config=CONFIG):
    """Rotate-half RoPE of x [T, heads, hd] at the rows' positions."""
    d = config.head_dim
    angles = np.asarray(positions, np.float64)[:, None] / config.rope_theta ** (np.arange(0, d, 2) / d)[None, :]
    angles = np.concatenate([angles, angles], axis=-1)[:, None, :]
    half = d // 2
    return x * np.cos(angles) + np.concatenate([-x[..., half:], x[..., :half]], axis=-1) * np.sin(angles)


def run(params, tokens, positions, context=None, config=CONFIG):
    """Rows through every layer, attending causally over ``context`` (per layer: rotated K, V,
    positions) and themselves. Per layer: un-rotated K, V and the attention probabilities
    [heads, rows, context + rows]."""
    h = np.asarray(params["embed"]["embedding"], np.float64)[tokens]
    rows, group = len(tokens), config.num_heads // config.num_kv_heads
    layers = []
    for index in range(config.num_layers):
        w = layer_weights(params, index)
        x = rms_norm(h, w["attn_norm"], config.rms_norm_eps)
        q = rotate((x @ w["q_proj"]).reshape(rows, config.num_heads, -1), positions, config)
        k = (x @ w["k_proj"]).reshape(rows, config.num_kv_heads, -1)
        v = (x @ w["v_proj"]).reshape(rows, config.num_kv_heads, -1)
        keys, values, key_pos = rotate(k, positions, config), v, np.asarray(positions)
        if context is not None:
            ck, cv, cpos = context[index]
            keys, values = np.concatenate([ck, keys]), np.concatenate([cv, values])
            key_pos = np.concatenate([cpos, key_pos])
        logits = np.einsum("thd,shd->hts", q, np.repeat(keys, group, axis=1)) / np.sqrt(config.head_dim)
        logits = np.where(key_pos[None, None, :] <= np.asarray(positions)[None, :, None], logits, -np.inf)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attended = np.einsum("hts,shd->thd", probs, np.repeat(values, group, axis=1)).reshape(rows, -1)
        h = h + attended @ w["o_proj"]
        x = rms_norm(h, w["mlp_norm"], config.rms_norm_eps)
        gate = x @ w["gate_proj"]
        h = h + (gate / (1 + np.exp(-gate)) * (x @ w["up_proj"])) @ w["down_proj"]
        layers.append((k, v, probs))
    return layers


def assembled_context(params, prompt: RagPrompt, config=CONFIG):
    """Each segment encoded alone at local positions, keys rotated once at global positions."""
    per_layer = [([], [], []) for _ in range(config.num_layers)]
    start = 0
    for segment in (prompt.prefix, *prompt.chunks):
        n = len(segment)
        for index, (k, v, _) in enumerate(run(params, np.asarray(segment), np.arange(n), config=config)):
            per_layer[index][0].append(rotate(k, start + np.arange(n), config))
            per_layer[index][1].append(v)
            per_layer[index][2].append(start + np.arange(n))
        start += n
    return [tuple(np.concatenate(parts) for parts in layer) for layer in per_layer], start


def top_k(scores, k):
    order = np.argsort(-np.asarray(scores), kind="stable")  # ties to the earlier position
    return np.sort(order[:k])


# ----------------------------------------------------------------------------- tiny random model


@pytest.fixture(scope="module")
def engine():
    return Engine(llama.init_params(CONFIG, jax.random.PRNGKey(11)), CONFIG, max_new_tokens=4)


@pytest.fixture(scope="module")
def prompt():
    rng = np.random.default_rng(5)
    tokens = lambda n: rng.integers(2, CONFIG.vocab_size, n)  # noqa: E731
    return RagPrompt(prefix=tokens(5), chunks=(tokens(17), tokens(14), tokens(19)), query=tokens(6))


def stage_one_scores(params, prompt: RagPrompt, config=CONFIG):
    """alpha(t) over the context rows: the query rows run over the assembled cache, attention
    averaged over heads, summed over query rows, averaged over layers; and C."""
    context, c = assembled_context(params, prompt, config)
    query = np.asarray(prompt.query)
    stage_one = run(params, query, c + np.arange(len(query)), context, config)
    return np.mean([probs.mean(axis=0).sum(axis=0)[:c] for _, _, probs in stage_one], axis=0), context, c


@pytest.fixture(scope="module")
def reference(engine, prompt):
    """Stage I scores and the layer-1 check-layer scores, from the NumPy model."""
    alpha, context, c = stage_one_scores(engine.params, prompt)
    everything = np.concatenate([prompt.prefix, *prompt.chunks, prompt.query])
    full = run(engine.params, everything, np.arange(len(everything)))
    # Layer 0 recomputed for all tokens makes layer-1 V (and attention) those of a full prefill.
    v_fresh, v_cached = full[1][1][:c], context[1][1]
    deviation = v_fresh - v_cached
    received = full[1][2].mean(axis=0).sum(axis=0)[:c]
    return {"c": c, "prophetkv": alpha, "cacheblend": np.sum(deviation**2, axis=(1, 2)),
            "kvshare": received * np.sum(np.abs(deviation), axis=(1, 2))}


def _margin(scores, k):
    ordered = np.sort(scores)[::-1]
    return ordered[k - 1] - ordered[k]


# 0.25 makes floor(p * C) = 13 differ from floor(p * (C + 1)) = 14 (C = 55): a budget off by one row fails.
@pytest.mark.parametrize("method", ["prophetkv", "cacheblend", "kvshare"])
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.3])
def test_selected_rows_are_the_top_k_of_independently_computed_scores(engine, prompt, reference, method, ratio):
    c = reference["c"]
    k = int(ratio * c)
    assert ratio != 0.25 or int(ratio * (c + 1)) != k
    scores = reference[method]
    assert _margin(scores, k) > 1e-6 * scores.max()  # the boundary is not a float tie
    selected = engine.prefill(prompt, method, ratio).selected
    np.testing.assert_array_equal(selected, top_k(scores, k))


@pytest.mark.parametrize("ratio", [0.1, 0.3])
def test_chunk_only_prophetkv_is_the_top_k_of_stage_one_over_chunk_rows(engine, ratio):
    """The prefix (exact already) is no candidate and costs no budget: k = floor(p * C_chunks). A
    20-row prefix, so that the spec's ProphetKV does select prefix rows here."""
    rng = np.random.default_rng(5)
    tokens = lambda n: rng.integers(2, CONFIG.vocab_size, n)  # noqa: E731
    prompt = RagPrompt(prefix=tokens(20), chunks=(tokens(17), tokens(14), tokens(19)), query=tokens(6))
    alpha, _, c = stage_one_scores(engine.params, prompt)
    scores, k = alpha[20:], int(ratio * 50)
    assert _margin(scores, k) > 1e-6 * scores.max()
    assert top_k(alpha, int(ratio * c)).min() < 20  # the spec's set spends budget on the prefix
    selected = engine.prefill(prompt, "prophetkv_chunks", ratio).selected
    np.testing.assert_array_equal(selected, 20 + top_k(scores, k))


@pytest.mark.parametrize("method", ["cacheblend", "epic", "kvshare", "prophetkv"])
def test_every_selector_spends_floor_p_times_c_rows(engine, prompt, method):
    c = len(prompt.prefix) + sum(len(chunk) for chunk in prompt.chunks)
    result = engine.prefill(prompt, method, 0.25)
    assert (result.num_context, len(result.selected), int(0.25 * (c + 1))) == (c, int(0.25 * c), int(0.25 * c) + 1)
    assert result.selected.max() < c


# ----------------------------------------------------------------------------- planted needle, default model

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEYS = ("amber-falcon", "quiet-harbor", "silver-lantern", "rapid-meadow", "hollow-canyon", "gentle-orchid")
VALUES = ("4819273", "7302914", "5167382", "9043716", "2658041", "6391527")


def needle_prompt(tokenizer, asked: int = 2):
    """Six chunks, each hiding one key's number between noise lines; the query asks for chunk ``asked``'s.

    Returns the prompt and, per chunk, the global positions of its key's tokens (with " is")
    and of its value's digit tokens.
    """
    from prophetkv_jax.prompts import build_rag_prompt

    question = f"\nWhat is the special magic number for {KEYS[asked]} mentioned in the provided text?"
    frame = build_rag_prompt(tokenizer, "A special magic number is hidden within the following text. Make sure "
                             "to memorize it. I will quiz you about the number afterwards.\n", "x", question,
                             f" The special magic number for {KEYS[asked]} mentioned in the provided text is",
                             chunk_tokens=4096)
    chunks, keys, values, start = [], [], [], len(frame.prefix)
    for i, (key, value) in enumerate(zip(KEYS, VALUES)):
        head = tokenizer.encode("\n".join([NOISE] * (2 + i % 2)) + "\nOne of the special magic numbers for")
        key_ids = tokenizer.encode(f" {key} is")
        digits = tokenizer.encode(f": {value}")
        tail = tokenizer.encode(".\n" + "\n".join([NOISE] * (3 - i % 2)) + "\n")
        at = start + len(head)
        keys.append(at + np.arange(len(key_ids)))
        at += len(key_ids)
        values.append(np.asarray([at + j for j, t in enumerate(digits) if tokenizer.decode([t]).strip().isdigit()]))
        chunk = np.asarray(head + key_ids + digits + tail, np.int32)
        chunks.append(chunk)
        start += len(chunk)
    return RagPrompt(prefix=frame.prefix, chunks=tuple(chunks), query=frame.query), keys, values


@pytest.mark.slow
def test_prophetkv_finds_the_asked_needle_and_tracks_the_oracle_best(default_model):
    """At p = 0.1 ProphetKV recomputes more of the asked key's tokens than of any other key's, and
    its set overlaps the oracle's most. (The value digits are in neither ProphetKV's set nor the
    oracle's: with this model the query's layer-mean attention lands on the key, not the value.)"""
    params, config, tokenizer = default_model
    engine = Engine(params, config, max_new_tokens=8)
    prompt, keys, _ = needle_prompt(tokenizer, asked=2)
    report = engine.diagnose(prompt, ratio=0.1)
    chosen = set(report["prophetkv"]["selected"].tolist())
    covered = [len(chosen & set(k.tolist())) for k in keys]
    assert covered[2] > max(covered[:2] + covered[3:]), covered
    overlaps = {m: report[m]["oracle_overlap"] for m in ("cacheblend", "epic", "kvshare", "prophetkv")}
    assert overlaps["prophetkv"] == max(overlaps.values()) and overlaps["prophetkv"] > 0.3, overlaps


@pytest.mark.slow
def test_stage_one_can_select_the_attention_sink_at_row_0(default_model):
    """Row 0 (the chat template's first token) is one of the rows the default model's query attends to
    most: Stage I's candidates must start at row 0 and stop before the first query row (a window
    shifted by one drops it). The default model cut to its first 4 layers, the prefix and two chunks
    keep the NumPy reference of Stage I a few seconds; its top-k must be the selected set."""
    import dataclasses

    params, config, tokenizer = default_model
    config = dataclasses.replace(config, num_layers=4)
    params = {**params, "layers": jax.tree.map(lambda x: x[:4], params["layers"])}
    needles, _, _ = needle_prompt(tokenizer)
    prompt = RagPrompt(prefix=needles.prefix, chunks=needles.chunks[:2], query=needles.query)
    alpha, _, c = stage_one_scores(params, prompt, config)
    k = int(0.05 * c)
    assert 0 in top_k(alpha, k) and _margin(alpha, k) > 1e-3 * alpha.max()
    selected = Engine(params, config, max_new_tokens=8).prefill(prompt, "prophetkv", 0.05).selected
    np.testing.assert_array_equal(selected, top_k(alpha, k))
