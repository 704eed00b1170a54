"""Generation: the chat answer, sampling controls, context limits."""

import numpy as np
import pytest

from prophetkv_jax.decode import generate
from prophetkv_jax.generate import main


@pytest.mark.slow
def test_greedy_chat_answer_names_paris(default_model):
    params, config, tokenizer = default_model
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    ids = generate(params, config, tokenizer.encode(prompt), 24, tokenizer.eos_ids)
    assert "Paris" in tokenizer.decode(ids)
    assert ids[-1] in tokenizer.eos_ids  # stopped at EOS, not at the limit


@pytest.mark.slow
def test_sampling_is_seeded_and_tiny_top_p_is_greedy(default_model):
    params, config, tokenizer = default_model
    ids = tokenizer.encode("Once upon a time")
    a = generate(params, config, ids, 12, temperature=1.0, top_p=0.95, seed=1)
    b = generate(params, config, ids, 12, temperature=1.0, top_p=0.95, seed=1)
    c = generate(params, config, ids, 12, temperature=1.0, top_p=0.95, seed=2)
    assert a == b and a != c
    assert generate(params, config, ids, 8, temperature=0.7, top_p=1e-6) == generate(params, config, ids, 8)


def test_prompt_over_context_and_bad_flags_are_refused(default_model):
    params, config, _ = default_model
    with pytest.raises(ValueError, match="exceeds the model's context of 8192"):
        generate(params, config, list(np.zeros(8190, int)), 8)
    assert main(["hi", "--top-p", "0"]) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    (["--max-new-tokens", "-1"], "--max-new-tokens must be >= 1, got -1"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--model", "{tmp}/nope"], "nope: no such checkpoint"),
    (["--model", "{tmp}"], "config.json lacks"),  # an HF config without model_type (or any field)
    (["--mesh", "model=4"], "--mesh model=4: only 1 cpu device"),
    (["--mesh", "data=2"], "--mesh 'data=2'"),
])
def test_bad_arguments_and_models_are_one_line_errors(tmp_path, capsys, args, message):
    (tmp_path / "config.json").write_text("{}")
    code = main(["hi", *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("python -m prophetkv_jax.generate: error:")
    assert message in err


def test_batched_greedy_decoding_equals_one_cache_at_a_time():
    import jax

    from prophetkv_jax import recompute
    from prophetkv_jax.decode import decode_from_cache, greedy_decode_batch
    from prophetkv_jax.model import llama
    from prophetkv_jax.model.config import tiny_config

    config = tiny_config()
    params = llama.init_params(config, jax.random.PRNGKey(3))
    rng = np.random.default_rng(0)
    prefills = []
    for n in (9, 14, 11):
        cache = llama.KVCache.empty(config, 64)
        logits, cache = recompute.recompute_rows(params, config, cache, rng.integers(0, 256, n), np.arange(n),
                                                 last_only=True)
        prefills.append((cache, np.asarray(logits[-1]), n))
    eos = {int(np.argmax(prefills[1][1]))}  # the second stream stops at once
    together = greedy_decode_batch(params, config, *map(list, zip(*prefills)), 10, eos)
    one_by_one = [decode_from_cache(params, config, cache, logits, n, 10, eos)
                  for cache, logits, n in prefills]  # the caches stay intact
    assert together == one_by_one
    assert len(together[1]) == 1 and len(together[0]) == 10
