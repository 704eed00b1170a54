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
