"""The GGUF-built tokenizer and chat template against transformers' own conversion."""

import pytest

MIXED = "Hello   world!\n\n  Café 12345 naïve — 東京 tabs\tand  spaces 3.14159 <|im_end|> émoji 🙂 x=[1,22,333]"


@pytest.mark.slow
def test_ids_match_transformers(default_model, reference_model):
    tokenizer, reference = default_model[2], reference_model[1]
    ids = tokenizer.encode(MIXED)
    assert ids == reference(MIXED, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == MIXED


@pytest.mark.slow
def test_chat_template_matches_transformers(default_model, reference_model):
    tokenizer, reference = default_model[2], reference_model[1]
    messages = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}]
    ours = tokenizer.apply_chat_template(messages)
    theirs = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours == theirs
    assert ours.endswith("<|im_start|>assistant\n")


def test_bos_and_eos(default_model):
    tokenizer = default_model[2]
    assert tokenizer.encode("a", add_bos=True)[0] == tokenizer.bos_id
    assert tokenizer.backend.id_to_token(next(iter(tokenizer.eos_ids))) == "<|im_end|>"
