"""Model files that load but describe another model than the one that would run: an activation or
RoPE the code does not implement, integer weights, a tokenizer with ids the model has no row for,
special tokens that are not in the vocabulary. Each is refused at load in one line naming the file
(exit 2), never run as a model that answers wrong."""

import json

import numpy as np
import pytest
from tiny_checkpoints import VOCAB, write_gguf, write_hf_dir

from prophetkv_jax.generate import main as generate_main

PROG = "python -m prophetkv_jax.generate: error: "


def refused(capsys, path) -> str:
    code = generate_main(["t5 t6", "--model", str(path), "--max-new-tokens", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(PROG), (code, out, err)
    return err.strip()


def loads(capsys, path) -> None:
    code = generate_main(["t5 t6", "--model", str(path), "--max-new-tokens", "2"])
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize(("field", "value"), [
    ("hidden_act", "gelu"), ("hidden_act", "gelu_pytorch_tanh"), ("partial_rotary_factor", 0.5),
    ("final_logit_softcapping", 30.0), ("attn_logit_softcapping", 50.0),
])
def test_config_fields_that_change_the_math_are_refused(tmp_path, capsys, field, value):
    path = write_hf_dir(tmp_path / "m", config={field: value})
    line = refused(capsys, path)
    assert f"{path / 'config.json'}: {field}={value!r} is not supported" in line


def test_the_fields_the_model_implements_load(tmp_path, capsys):
    loads(capsys, write_hf_dir(tmp_path / "m", config={"hidden_act": "silu", "partial_rotary_factor": 1.0,
                                                        "final_logit_softcapping": None}))


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.bool_])
def test_non_float_weights_are_refused_naming_file_and_tensor(tmp_path, capsys, dtype):
    def to_integer(tensors):
        name = "model.layers.1.mlp.up_proj.weight"
        tensors[name] = (tensors[name] > 0).astype(dtype)

    path = write_hf_dir(tmp_path / "m", edit=to_integer)
    line = refused(capsys, path)
    assert f"{path / 'model.safetensors'}: tensor model.layers.1.mlp.up_proj.weight is " in line
    assert "expected floating-point weights" in line


def test_a_tokenizer_with_more_ids_than_the_vocabulary_is_refused_at_load(tmp_path, capsys):
    path = write_hf_dir(tmp_path / "m", config={"vocab_size": VOCAB // 2})
    line = refused(capsys, path)
    assert str(path / "tokenizer.json") in line and str(path / "config.json") in line
    assert f"{VOCAB} ids" in line and f"vocab_size={VOCAB // 2}" in line


def test_a_gguf_token_list_longer_than_its_vocab_size_is_refused_at_load(tmp_path, capsys):
    path = write_gguf(tmp_path / "m.gguf", vocab_size=VOCAB // 2)
    line = refused(capsys, path)
    assert f"{path} (tokenizer.ggml.tokens): holds {VOCAB} ids, but {path} (llama.vocab_size) vocab_size=" in line


@pytest.mark.parametrize("field", ["eos_token", "bos_token"])
def test_special_tokens_missing_from_the_vocabulary_are_refused(tmp_path, capsys, field):
    path = write_hf_dir(tmp_path / "m")
    config = json.loads((path / "tokenizer_config.json").read_text())
    config[field] = {"content": "</s>"}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    line = refused(capsys, path)
    assert f"{path / 'tokenizer_config.json'}: {field} '</s>' is not in the vocabulary of" in line
    assert str(path / "tokenizer.json") in line


@pytest.mark.parametrize(("extra", "named"), [
    ({"rope_scaling": {"rope_type": "default"},
      "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}}, "rope_scaling"),
    ({"rope_theta": 500000.0, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}, "rope_theta"),
])
def test_conflicting_rope_keys_are_refused(tmp_path, capsys, extra, named):
    path = write_hf_dir(tmp_path / "m", config=extra)
    line = refused(capsys, path)
    assert f"{path / 'config.json'}: {named} and rope_parameters disagree" in line


def test_rope_keys_that_agree_load(tmp_path, capsys):
    loads(capsys, write_hf_dir(tmp_path / "m", config={
        "rope_theta": 10000.0, "rope_scaling": {"type": "default"},
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}))


@pytest.mark.parametrize("prompt", ["t5 \udcff t6", "t5 \ud800"])
def test_a_prompt_that_is_not_utf8_is_one_line(tmp_path, capsys, prompt):
    """A non-UTF-8 byte in a command-line argument reaches Python as a lone surrogate ("\\udcff"),
    which the Rust tokenizer refuses with a TypeError."""
    path = write_hf_dir(tmp_path / "m")
    for chat in ([], ["--no-chat"]):
        code = generate_main([prompt, "--model", str(path), "--max-new-tokens", "2", *chat])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and err.count("\n") == 1, (code, err)
        assert "text to tokenize is not valid UTF-8" in err and "position 3" in err
