"""Damaged or mismatched checkpoints, as a user meets them through ``python -m prophetkv_jax.generate``:
each is refused at load with one line naming the file and what is wrong (exit 2), never an answer.

Every checkpoint is a tiny random one written on the spot (tiny_checkpoints.py), with the damage
injected before it is written.
"""

import json
import os

import numpy as np
import pytest
from tiny_checkpoints import HF_CONFIG, write_gguf, write_hf_dir

from prophetkv_jax.generate import main as generate_main

PROG = "python -m prophetkv_jax.generate: error: "


def refused(capsys, path, *flags: str) -> str:
    """The one stderr line of a generate run on ``path`` that must fail with exit 2 (and print no answer)."""
    code = generate_main(["t5 t6", "--model", str(path), "--max-new-tokens", "2", *flags])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(PROG), (code, out, err)
    return err.strip()


def poison(name: str, value: float):
    def edit(tensors):
        tensors[name][0, 0] = value
    return edit


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_hf_weight_is_refused_naming_file_and_tensor(tmp_path, capsys, value):
    path = write_hf_dir(tmp_path / "m", edit=poison("model.layers.1.mlp.up_proj.weight", value))
    line = refused(capsys, path)
    assert f"{path / 'model.safetensors'}: tensor model.layers.1.mlp.up_proj.weight holds 1 non-finite" in line


def test_non_finite_gguf_weight_is_refused_naming_file_and_tensor(tmp_path, capsys):
    path = write_gguf(tmp_path / "m.gguf", edit=poison("blk.0.ffn_down.weight", np.nan))
    assert f"{path}: tensor blk.0.ffn_down.weight holds 1 non-finite" in refused(capsys, path)


@pytest.mark.parametrize(("config_layers", "weight_layers", "message"), [
    (1, 2, "tensor model.layers.1.input_layernorm.weight is layer 1, but config.json num_hidden_layers=1"),
    (3, 2, "no tensors of layer 2, but config.json num_hidden_layers=3 (the weights hold 2 layer(s))"),
])
def test_hf_layer_count_must_match_the_weights(tmp_path, capsys, config_layers, weight_layers, message):
    path = write_hf_dir(tmp_path / "m", config={"num_hidden_layers": config_layers}, layers=weight_layers)
    assert f"{path / 'model.safetensors'}: {message}" in refused(capsys, path)


@pytest.mark.parametrize(("block_count", "layers", "message"), [
    (1, 2, "tensor blk.1.attn_k.weight is layer 1, but GGUF llama.block_count=1"),
    (2, 1, "no tensors of layer 1, but GGUF llama.block_count=2"),
])
def test_gguf_block_count_must_match_the_tensors(tmp_path, capsys, block_count, layers, message):
    path = write_gguf(tmp_path / "m.gguf", block_count=block_count, layers=layers)
    assert f"{path}: {message}" in refused(capsys, path)


def test_a_tensor_the_config_has_no_place_for_is_refused(tmp_path, capsys):
    """A q-projection bias in a plain llama config would be dropped silently: a different model."""
    path = write_hf_dir(tmp_path / "m", edit=lambda t: t.update(
        {"model.layers.0.self_attn.q_proj.bias": np.ones(16, np.float32)}))
    assert "tensor model.layers.0.self_attn.q_proj.bias is not part of the model its config describes" in (
        refused(capsys, path))


def _llama3_factors(theta: float, head_dim: int, factor: float = 8.0) -> np.ndarray:
    """llama.cpp's rope_freqs.weight for Llama-3 scaling, from the reference formula (HF's)."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
    wavelen = 2 * np.pi / inv_freq
    smooth = np.clip((8192 / wavelen - 1.0) / (4.0 - 1.0), 0, 1)
    scaled = np.where(wavelen > 8192, inv_freq / factor, (1 - smooth) * inv_freq / factor + smooth * inv_freq)
    return (inv_freq / scaled).astype(np.float32)


def test_gguf_rope_freqs_of_llama3_scaling_load_as_that_scaling(tmp_path):
    from prophetkv_jax.model.checkpoint import load_checkpoint
    from prophetkv_jax.model.config import RopeScaling

    factors = _llama3_factors(500000.0, HF_CONFIG["head_dim"])
    assert factors.min() == 1.0 and factors.max() == 8.0 and ((factors > 1) & (factors < 8)).any()  # all 3 bands
    path = write_gguf(tmp_path / "m.gguf", rope_freq_base=500000.0,
                      edit=lambda t: t.update({"rope_freqs.weight": factors}))
    _, config, _ = load_checkpoint(str(path))
    assert config.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 8192) and config.rope_theta == 500000.0


def test_gguf_rope_freqs_of_another_form_are_refused(tmp_path, capsys):
    factors = np.full(HF_CONFIG["head_dim"] // 2, 2.0, np.float32)
    path = write_gguf(tmp_path / "m.gguf", rope_freq_base=500000.0,
                      edit=lambda t: t.update({"rope_freqs.weight": factors}))
    assert "rope_freqs.weight is not Llama-3 RoPE scaling" in refused(capsys, path)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("num_attention_heads", 0, "num_attention_heads must be a positive integer, got 0"),
    ("num_key_value_heads", 0, "num_key_value_heads must be a positive integer, got 0"),
    ("hidden_size", -16, "hidden_size must be a positive integer, got -16"),
    ("num_hidden_layers", 0, "num_hidden_layers must be a positive integer, got 0"),
    ("intermediate_size", 1.5, "intermediate_size must be a positive integer, got 1.5"),
    ("vocab_size", "32", "vocab_size must be a positive integer, got '32'"),
    ("head_dim", 0, "head_dim must be a positive integer, got 0"),
    ("max_position_embeddings", 0, "max_position_embeddings must be a positive integer, got 0"),
    ("rope_theta", 0, "rope_theta must be a finite number > 0, got 0"),
    ("rms_norm_eps", float("nan"), "rms_norm_eps must be a finite number > 0, got nan"),
    ("num_key_value_heads", 3, "num_heads=2 must be a multiple of num_kv_heads=3"),
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0}, "config.json lacks 'low_freq_factor'"),
])
def test_zero_negative_or_wrong_config_values_name_config_json_and_the_field(tmp_path, capsys, field, value, message):
    config = {field: value, **({"head_dim": None} if field == "num_attention_heads" else {})}
    path = write_hf_dir(tmp_path / "m", config=config)
    assert refused(capsys, path) == f"{PROG}{path / 'config.json'}: {message}"


def test_corrupt_tokenizer_json_is_one_line_naming_it(tmp_path, capsys):
    path = write_hf_dir(tmp_path / "m")
    (path / "tokenizer.json").write_text('{1: "a"}')
    line = refused(capsys, path)
    assert f"{path / 'tokenizer.json'}: not a readable tokenizer.json (key must be a string" in line


@pytest.mark.parametrize("keep", [5, 0.5])
def test_truncated_safetensors_is_one_line_naming_it(tmp_path, capsys, keep):
    path = write_hf_dir(tmp_path / "m")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    assert f"{path / 'model.safetensors'}: not a readable safetensors file" in refused(capsys, path)


@pytest.mark.parametrize(("template", "error"), [
    ("{% for %}", "TemplateSyntaxError"),
    ("{{ system_prompt.text }}", "UndefinedError"),
    ("{{ messages.__class__.__mro__ }}", "SecurityError"),
    ("{{ raise_exception('only user messages') }}", "raise_exception('only user messages')"),
])
def test_failing_chat_templates_name_their_file(tmp_path, capsys, template, error):
    path = write_hf_dir(tmp_path / "m", chat_template=template)
    line = refused(capsys, path)
    assert line.startswith(f"{PROG}{path / 'tokenizer_config.json'}: chat template failed (") and error in line


def test_a_failing_gguf_chat_template_names_the_gguf_file(tmp_path, capsys):
    path = write_gguf(tmp_path / "m.gguf", chat_template="{{ messages[0].content | nosuchfilter }}")
    line = refused(capsys, path)
    assert line.startswith(f"{PROG}{path} (tokenizer.chat_template): chat template failed (TemplateAssertionError")


def _sharded(path, shard_of):
    """An HF directory whose weights sit in shards named by an index; ``shard_of(name)`` picks the shard."""
    from safetensors.numpy import load_file, save_file

    write_hf_dir(path)
    tensors = load_file(str(path / "model.safetensors"))
    (path / "model.safetensors").unlink()
    shards: dict[str, dict] = {}
    for name, value in tensors.items():
        shards.setdefault(shard_of(name), {})[name] = value
    for shard, part in shards.items():
        (path / shard).parent.mkdir(parents=True, exist_ok=True)
        save_file(part, str(path / shard))
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        name: shard for shard, part in shards.items() for name in part}}))
    return path


def test_index_entries_outside_the_model_folder_are_refused_and_never_opened(tmp_path, capsys, monkeypatch):
    import safetensors

    opened = []
    real_open = safetensors.safe_open
    monkeypatch.setattr(safetensors, "safe_open", lambda f, **kw: opened.append(f) or real_open(f, **kw))
    outside = tmp_path / "x.safetensors"
    for name, entry in (("dotdot", "../x.safetensors"), ("absolute", str(outside))):
        path = _sharded(tmp_path / name, lambda n: "a.safetensors")
        (path / "a.safetensors").rename(outside)
        index = json.loads((path / "model.safetensors.index.json").read_text())
        index["weight_map"]["lm_head.weight"] = entry
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
        line = refused(capsys, path)
        index_file = path / "model.safetensors.index.json"
        assert f"{index_file}: names {entry!r}; index files may only name files inside" in line
    link = _sharded(tmp_path / "link", lambda n: "a.safetensors")
    (link / "a.safetensors").rename(outside)
    os.symlink(outside, link / "a.safetensors")
    assert "resolves to" in refused(capsys, link) and "outside the model folder" in refused(capsys, link)
    assert str(outside) not in map(str, opened)


def test_sharded_weights_inside_the_folder_and_hub_cache_links_load(tmp_path):
    """Subfolders are inside the folder; a hub cache snapshot's links into its own blobs/ are too."""
    from prophetkv_jax.model.checkpoint import load_checkpoint

    path = _sharded(tmp_path / "m", lambda n: "shards/1.safetensors" if "layers.1" in n else "0.safetensors")
    assert load_checkpoint(path)[1].num_layers == HF_CONFIG["num_hidden_layers"]
    snapshot = _sharded(tmp_path / "models--x" / "snapshots" / "rev", lambda n: "0.safetensors")
    (tmp_path / "models--x" / "blobs").mkdir()
    (snapshot / "0.safetensors").rename(tmp_path / "models--x" / "blobs" / "sha")
    os.symlink("../../blobs/sha", snapshot / "0.safetensors")
    assert load_checkpoint(snapshot)[1].num_layers == HF_CONFIG["num_hidden_layers"]


@pytest.mark.parametrize(("flag", "value"), [
    ("--temperature", "nan"), ("--temperature", "inf"), ("--temperature", "-1"), ("--top-p", "nan"),
])
def test_nan_and_inf_sampling_flags_are_refused_before_loading(tmp_path, capsys, monkeypatch, flag, value):
    from prophetkv_jax.model import checkpoint

    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: pytest.fail("loaded a model"))
    line = refused(capsys, tmp_path / "never-read", flag, value)
    assert line.startswith(f"{PROG}{flag} must be") and f"got {value}" in line


def test_finite_weights_whose_logits_overflow_give_no_answer(tmp_path, capsys):
    """Finite weights pass the load check; logits of +-inf must still not decode into an answer."""
    signs = np.where(np.random.default_rng(0).random((HF_CONFIG["vocab_size"], 16)) < 0.5, -3e38, 3e38)
    path = write_hf_dir(tmp_path / "m", edit=lambda t: t.update({"lm_head.weight": signs.astype(np.float32)}))
    assert "the model's logits are not finite (NaN/inf) for this prompt" in refused(capsys, path)
