"""Session fixtures: the default model loaded once by the project and once by transformers."""

import pytest


@pytest.fixture(scope="session")
def default_model():
    from prophetkv_jax.model.checkpoint import load_checkpoint

    return load_checkpoint()


@pytest.fixture(scope="session")
def reference_model():
    """transformers' own GGUF loader (dequantises with gguf too, but its own permutation logic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prophetkv_jax.model.checkpoint import default_model_path

    path = default_model_path()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A random 2-layer Llama saved by transformers, with a word-level tokenizer ("t0".."t255" are ids 0..255)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("tiny_llama_words")
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(config.vocab_size)}, unk_token="t3"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text('{"bos_token": "t1", "eos_token": "t2"}')
    return path
