"""Tiny random checkpoints written on the spot with numpy (no torch): HF directories and GGUF files.

Fault tests edit them before writing (a NaN in one tensor, a layer too many, a bad config value),
so each test builds exactly the damage it pins, in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

VOCAB = 32
HF_CONFIG = {
    "model_type": "llama", "vocab_size": VOCAB, "hidden_size": 16, "intermediate_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}
_LAYER_SHAPES = {
    "input_layernorm.weight": ("h",), "post_attention_layernorm.weight": ("h",),
    "self_attn.q_proj.weight": ("q", "h"), "self_attn.k_proj.weight": ("kv", "h"),
    "self_attn.v_proj.weight": ("kv", "h"), "self_attn.o_proj.weight": ("h", "q"),
    "mlp.gate_proj.weight": ("i", "h"), "mlp.up_proj.weight": ("i", "h"), "mlp.down_proj.weight": ("h", "i"),
}


def hf_tensors(config: dict[str, Any], layers: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named float32 tensors of a random Llama; ``layers`` overrides the config's layer count."""
    rng = np.random.default_rng(seed)
    sizes = {"h": config["hidden_size"], "i": config["intermediate_size"],
             "q": config["num_attention_heads"] * config["head_dim"],
             "kv": config["num_key_value_heads"] * config["head_dim"]}
    out = {"model.embed_tokens.weight": rng.normal(0, 0.5, (config["vocab_size"], sizes["h"])),
           "model.norm.weight": np.ones(sizes["h"]),
           "lm_head.weight": rng.normal(0, 0.5, (config["vocab_size"], sizes["h"]))}
    for i in range(config["num_hidden_layers"] if layers is None else layers):
        for name, axes in _LAYER_SHAPES.items():
            shape = tuple(sizes[a] for a in axes)
            out[f"model.layers.{i}.{name}"] = np.ones(shape) if "norm" in name else rng.normal(0, 0.3, shape)
    return {k: v.astype(np.float32) for k, v in out.items()}


def write_tokenizer(path: Path, chat_template: str | None = "{{ messages[0]['content'] }}") -> None:
    """A word-level tokenizer ("t0".."t31" are ids 0..31; t1 BOS, t2 EOS) and its tokenizer_config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t3"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.save(str(path / "tokenizer.json"))
    tok_config: dict[str, Any] = {"bos_token": "t1", "eos_token": "t2"}
    if chat_template is not None:
        tok_config["chat_template"] = chat_template
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config))


def write_hf_dir(path: Path, *, config: dict[str, Any] | None = None, layers: int | None = None,
                 edit: Callable[[dict[str, np.ndarray]], None] | None = None,
                 chat_template: str | None = "{{ messages[0]['content'] }}") -> Path:
    """An HF Llama directory: config.json (HF_CONFIG updated by ``config``), model.safetensors
    (``layers`` layers, then ``edit`` applied to the tensors), tokenizer files."""
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    cfg = {**HF_CONFIG, **(config or {})}
    tensors = hf_tensors({**HF_CONFIG, **{k: v for k, v in (config or {}).items() if k in HF_CONFIG
                                          and isinstance(v, int) and v > 0}}, layers)
    if edit is not None:
        edit(tensors)
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(cfg))
    write_tokenizer(path, chat_template)
    return path


_GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{_GGUF_NAMES[rest]}"


def write_gguf(path: Path, *, block_count: int | None = None, layers: int | None = None,
               edit: Callable[[dict[str, np.ndarray]], None] | None = None, chat_template: str | None = None,
               rope_freq_base: float | None = None, vocab_size: int | None = None) -> Path:
    """A llama GGUF file (F32 tensors, a byte-level BPE vocabulary of VOCAB tokens) with ``block_count``
    in its metadata and ``layers`` layers of tensors (both default to HF_CONFIG's); ``vocab_size``
    writes that metadata field and sizes the embedding and output tensors to it."""
    import gguf

    c = HF_CONFIG if vocab_size is None else {**HF_CONFIG, "vocab_size": vocab_size}
    tensors = {gguf_name(k): v for k, v in hf_tensors(c, layers).items()}
    if edit is not None:
        edit(tensors)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(c["num_hidden_layers"] if block_count is None else block_count)
    writer.add_context_length(c["max_position_embeddings"])
    writer.add_embedding_length(c["hidden_size"])
    writer.add_feed_forward_length(c["intermediate_size"])
    writer.add_head_count(c["num_attention_heads"])
    writer.add_head_count_kv(c["num_key_value_heads"])
    writer.add_key_length(c["head_dim"])
    writer.add_layer_norm_rms_eps(c["rms_norm_eps"])
    if rope_freq_base is not None:
        writer.add_rope_freq_base(rope_freq_base)
    if vocab_size is not None:
        writer.add_vocab_size(vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "ab"] + [f"x{i}" for i in range(VOCAB - 3)])
    writer.add_token_merges(["a b"])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
