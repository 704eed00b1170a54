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


# ----------------------------------------------------------------------------- Qwen2 / Qwen3 GGUF

QWEN_TEXTS = ("hello 12345 world, it's 3.14159", "Cafe\u0301 \u6771\u4eac \U0001f642\n\n  tabs\tand  spaces 12",
              "x=[1,22,333] I'LL we've")
# digit pairs merge only if the split keeps digits together (llama3's 1-3 digits, not Qwen2's 1)
QWEN_MERGES = ["1 2", "h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "l d", "\u0120w or", "\u0120wor ld",
               "3 3", "\u00c3 \u00a9"]


def _qwen_vocab():
    from tokenizers import pre_tokenizers

    tokens = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens += ["".join(m.split(" ")) for m in QWEN_MERGES] + ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    return tokens


def test_qwen2_gguf_pre_tokenizer_matches_transformers_qwen2_tokenizer():
    """A GGUF with tokenizer.ggml.pre = qwen2 tokenises like transformers' Qwen2Tokenizer on the same vocab."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    from prophetkv_jax.model.tokenizer import from_gguf_metadata

    tokens = _qwen_vocab()
    reference = Qwen2Tokenizer(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ")) for m in QWEN_MERGES])
    reference.add_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>")])  # as Qwen's files do
    ours = from_gguf_metadata({
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2", "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": QWEN_MERGES, "tokenizer.ggml.token_type": [1] * (len(tokens) - 3) + [3] * 3,
        "tokenizer.ggml.eos_token_id": len(tokens) - 1,
    }, "qwen.gguf")
    for text in QWEN_TEXTS + ("<|im_start|>user\n12<|im_end|>",):
        assert ours.encode(text) == reference(text, add_special_tokens=False).input_ids, text
    assert ours.backend.token_to_id("12") not in ours.encode("12")  # every digit alone


def test_qwen3_thinking_is_off_when_the_template_reads_the_switch():
    """Qwen3's template with enable_thinking=False closes an empty think block; ours renders that by default."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models
    from transformers import PreTrainedTokenizerFast

    from prophetkv_jax.model.tokenizer import Tokenizer

    template = (
        "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
        "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
        "{%- endif %}{%- endif %}"
    )
    backend = HFTokenizer(models.WordLevel({"x": 0}, unk_token="x"))
    reference = PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=template)
    ours = Tokenizer(backend, bos_id=None, eos_ids=[], chat_template=template)
    messages = [{"role": "user", "content": "What is 2+2?"}]
    off = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert ours.apply_chat_template(messages) == off and off.endswith("<think>\n\n</think>\n\n")
    on = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.apply_chat_template(messages, enable_thinking=True) == on != off
