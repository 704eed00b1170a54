"""Qwen2 and Qwen3 beside Llama: tiny random transformers models, HF directories and GGUF files."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from prophetkv_jax.model.checkpoint import CheckpointError, load_checkpoint
from prophetkv_jax.pipeline import Engine, RagPrompt

FAMILIES = ("qwen2", "qwen3")
RECOMPUTING = ("cacheblend", "epic", "kvshare", "prophetkv")
VOCAB = 256


def _hf_model(family: str):
    """Hidden 64, 2 layers, GQA; Qwen3 with head_dim 32 != hidden / heads. intermediate 256 fits a K-quant block."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False,
        max_position_embeddings=512,
    )
    torch.manual_seed(FAMILIES.index(family))
    if family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=32, **common))
    with torch.no_grad():  # random biases and norm scales, so a dropped one shows in the logits
        for name, tensor in model.named_parameters():
            if name.endswith(("bias", "q_norm.weight", "k_norm.weight")):
                tensor.copy_(1.0 + 0.5 * torch.randn_like(tensor) if "norm" in name else 0.5 * torch.randn_like(tensor))
    return model.eval()


def _write_tokenizer(path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.save(str(path / "tokenizer.json"))


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    """(name, transformers model, the project's (params, config, tokenizer) from its HF directory, that directory)."""
    model = _hf_model(request.param)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path, safe_serialization=True)
    _write_tokenizer(path)
    return request.param, model, load_checkpoint(path), path


def reference_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def make_prompt(seed: int = 0) -> RagPrompt:
    rng = np.random.default_rng(seed)
    tokens = lambda n: rng.integers(0, VOCAB, n)  # noqa: E731
    return RagPrompt(prefix=tokens(4), chunks=(tokens(9), tokens(7)), query=tokens(4))


def test_family_switches_come_from_the_config(family):
    name, _, (params, config, _), _ = family
    assert (config.qkv_bias, config.qk_norm) == {"qwen2": (True, False), "qwen3": (False, True)}[name]
    assert config.rope_theta == 1e6 and not config.tie_word_embeddings
    assert config.head_dim == (32 if name == "qwen3" else 16)
    assert ("bias" in params["layers"]["attn"]["q_proj"]) == config.qkv_bias
    assert ("q_norm" in params["layers"]["attn"]) == config.qk_norm


def test_logits_and_greedy_continuation_match_transformers(family):
    _, model, (params, config, _), _ = family
    engine = Engine(params, config, max_new_tokens=4)
    prompt = make_prompt()
    ids = engine.layout(prompt).tokens().tolist()
    prefill = engine.prefill(prompt, "full")
    assert np.abs(prefill.last_logits - reference_logits(model, ids)[-1]).max() <= 1e-4
    with torch.no_grad():
        batch = torch.tensor([ids])  # explicit mask: a prompt token equal to pad_token_id must stay visible
        expected = model.generate(batch, attention_mask=torch.ones_like(batch), max_new_tokens=4, do_sample=False,
                                  pad_token_id=0)
    assert engine.generate(prefill, 4) == expected[0, len(ids):].tolist()


@pytest.mark.slow
def test_prophetkv_invariants_hold(family):
    """Every recomputing method at p=1 is full prefill, at p=0 naive reuse; naive differs from full."""
    _, _, (params, config, _), _ = family
    engine = Engine(params, config, max_new_tokens=4)
    prompt = make_prompt()
    full, naive = engine.prefill(prompt, "full"), engine.prefill(prompt, "naive")
    assert np.abs(full.last_logits - naive.last_logits).max() > 1e-3
    for method in RECOMPUTING:
        np.testing.assert_allclose(engine.prefill(prompt, method, 1.0).last_logits, full.last_logits, atol=1e-4)
        np.testing.assert_allclose(engine.prefill(prompt, method, 0.0).last_logits, naive.last_logits, atol=1e-5)


def test_bfloat16_logits_stay_near_float32(family):
    """bf16 weights, activations and KV cache: last-row logits within 10% of the fp32 logits' spread.

    Measured on these models: 1.3% (qwen2) and 3.8% (qwen3); the top token is unchanged.
    """
    _, _, (params, config, _), path = family
    bf16_params, bf16_config, _ = load_checkpoint(path, dtype="bfloat16")
    assert bf16_params["layers"]["mlp"]["up_proj"]["kernel"].dtype == jnp.bfloat16
    prompt = make_prompt()
    full = Engine(params, config, max_new_tokens=4).prefill(prompt, "full")
    half = Engine(bf16_params, bf16_config, max_new_tokens=4).prefill(prompt, "full")
    assert half.cache.k.dtype == jnp.bfloat16
    gap = np.abs(half.last_logits - full.last_logits).max()
    assert 0 < gap <= 0.1 * full.last_logits.std()
    assert half.first_token == full.first_token


def test_unsupported_model_type_names_it(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gemma2"}')
    with pytest.raises(CheckpointError, match="model_type 'gemma2' is not supported"):
        load_checkpoint(tmp_path)


# ----------------------------------------------------------------------------- GGUF, quantised


# Where each k-quant block keeps its f16 scale(s), and small values for them (random codes, sane weights).
_K_QUANT_SCALES = {"Q4_K": (0, (3e-4, 2e-4)), "Q5_K": (0, (2e-4, 2e-4)), "Q6_K": (208, (3e-5,)),
                   "IQ4_NL": (0, (3e-4,))}


def _random_blocks(kind: str, rows: int, cols: int, seed: int) -> np.ndarray:
    """Valid blocks of a type gguf can dequantise but not quantise: random codes, small f16 scales."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]]
    blocks = np.random.default_rng(seed).integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    offset, scales = _K_QUANT_SCALES[kind]
    blocks[..., offset:offset + 2 * len(scales)] = np.frombuffer(np.array(scales, np.float16).tobytes(), np.uint8)
    return blocks.reshape(rows, -1)


def _encode(weight: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """``weight`` in GGUF type ``kind``: gguf.quants where it can quantise (Q5_0, Q8_0, BF16), numpy's f16/f32,
    random blocks for the k-quants (gguf.quants raises NotImplementedError for them)."""
    import gguf

    if kind in ("F32", "F16"):
        return weight.astype(np.dtype(kind.lower().replace("f", "float")))
    if kind in _K_QUANT_SCALES:
        return _random_blocks(kind, *weight.shape, seed)
    return gguf.quants.quantize(weight, gguf.GGMLQuantizationType[kind])


def _write_gguf(model, config, family: str, path, kind_of):
    """``model``'s weights as GGUF (metadata from ``config``), tensor ``hf_name`` in type ``kind_of(hf_name)``.

    Returns the dequantised state dict, the reference weights the loaded model must reproduce.
    """
    import gguf

    quant = gguf.GGMLQuantizationType
    c = config
    writer = gguf.GGUFWriter(str(path), family)
    for add, value in (
        (writer.add_block_count, c.num_layers), (writer.add_context_length, c.max_position_embeddings),
        (writer.add_embedding_length, c.hidden_size), (writer.add_feed_forward_length, c.intermediate_size),
        (writer.add_head_count, c.num_heads), (writer.add_head_count_kv, c.num_kv_heads),
        (writer.add_key_length, c.head_dim), (writer.add_value_length, c.head_dim),
        (writer.add_rope_freq_base, c.rope_theta), (writer.add_layer_norm_rms_eps, c.rms_norm_eps),
    ):
        add(value)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "ab"] + [f"x{i}" for i in range(VOCAB - 3)])
    writer.add_token_merges(["a b"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[family.upper()], c.num_layers)
    dequantised = {}
    for i, (hf_name, tensor) in enumerate(model.state_dict().items()):
        weight = tensor.numpy()
        kind = "F32" if weight.ndim == 1 else kind_of(hf_name)
        data = _encode(weight, kind, seed=i)
        writer.add_tensor(names.get_name(hf_name, try_suffixes=(".weight", ".bias")), data,
                          raw_dtype=None if kind in ("F32", "F16") else quant[kind])
        if kind != "IQ4_NL":
            reference = gguf.quants.dequantize(data, quant[kind]).reshape(weight.shape)
            dequantised[hf_name] = torch.from_numpy(reference.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dequantised


def _check_gguf_matches_dequantised(family, path, kind_of) -> None:
    """The GGUF's config equals the HF one and its logits equal transformers' on the dequantised weights."""
    name, model, (_, hf_config, _), _ = family
    reference = _hf_model(name)
    reference.load_state_dict(_write_gguf(model, hf_config, name, path, kind_of))
    params, config, _ = load_checkpoint(path)
    assert config.rms_norm_eps == pytest.approx(hf_config.rms_norm_eps)  # GGUF stores it as f32
    assert dataclasses.replace(config, rms_norm_eps=hf_config.rms_norm_eps) == hf_config
    engine = Engine(params, config, max_new_tokens=4)
    prompt = make_prompt()
    expected = reference_logits(reference, engine.layout(prompt).tokens().tolist())[-1]
    assert np.abs(engine.prefill(prompt, "full").last_logits - expected).max() <= 1e-4


def test_quantised_gguf_matches_its_dequantised_weights(family, tmp_path):
    """Q8_0 and Q4_K tensors load through gguf's dequantisers: logits equal transformers on those weights."""
    _check_gguf_matches_dequantised(family, tmp_path / "m.gguf", lambda n: "Q4_K" if "down_proj" in n else "Q8_0")


# K-quants need rows of 256 values: only ffn_down (intermediate 256) has them, one type per layer.
_MIXED_KINDS = {"q_proj": "Q5_0", "k_proj": "F16", "v_proj": "BF16", "o_proj": "Q5_0", "gate_proj": "F16",
                "up_proj": "BF16", "layers.0.mlp.down_proj": "Q5_K", "layers.1.mlp.down_proj": "Q6_K",
                "embed_tokens": "BF16", "lm_head": "F16"}


def test_other_gguf_types_match_their_dequantised_weights(family, tmp_path):
    """Q5_0, Q5_K, Q6_K, F16 and BF16 in one file: logits equal transformers on the dequantised weights."""
    kind_of = lambda n: next(kind for part, kind in _MIXED_KINDS.items() if part in n)  # noqa: E731
    _check_gguf_matches_dequantised(family, tmp_path / "mixed.gguf", kind_of)
    import gguf

    kinds = {t.tensor_type.name for t in gguf.GGUFReader(str(tmp_path / "mixed.gguf")).tensors}
    assert kinds == {"F32", "F16", "BF16", "Q5_0", "Q5_K", "Q6_K"}


def test_unsupported_gguf_quantisation_is_one_line_naming_it(family, tmp_path):
    name, model, (_, hf_config, _), _ = family
    path = tmp_path / "iq.gguf"
    _write_gguf(model, hf_config, name, path, lambda n: "IQ4_NL" if "layers.1.mlp.up_proj" in n else "F16")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and "blk.1.ffn_up.weight has unsupported type IQ4_NL" in message, message


def test_generate_cli_takes_dtype(family, capsys):
    from prophetkv_jax import generate

    *_, path = family
    args = ["t1 t2 t3", "--model", str(path), "--no-chat", "--max-new-tokens", "2"]
    assert generate.main(args + ["--dtype", "bfloat16"]) == 0
    assert capsys.readouterr().out.strip()
    assert generate.main(args + ["--dtype", "float16"]) == 2
    assert "argument --dtype: invalid choice: 'float16'" in capsys.readouterr().err
