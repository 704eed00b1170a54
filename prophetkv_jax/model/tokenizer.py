"""Tokenizer and chat template, from an HF ``tokenizer.json`` or from GGUF metadata.

Both paths end in a ``tokenizers.Tokenizer`` (the Rust BPE HF itself uses), so ids match
the reference implementation; special tokens are never added implicitly: callers say
``add_bos`` where they want one, and chat templates spell out their own markers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from runkit.cli import one_line

# llama.cpp's pre-tokenizer names -> the split HF applies before byte-level BPE. Llama 3 keeps runs of
# up to three digits together, Qwen2 (and Qwen3, whose GGUF files say "qwen2") splits every digit.
_DIGITS = {"llama-bpe": r"\p{N}{1,3}", "llama3": r"\p{N}{1,3}", "qwen2": r"\p{N}"}
_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|{digits}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_NFC = ("qwen2",)  # HF's Qwen2 tokenizer NFC-normalises before splitting
_CONTROL, _USER_DEFINED = 3, 4  # GGUF token_type values of special tokens


class Tokenizer:
    """Text <-> ids, BOS/EOS ids and the checkpoint's chat template."""

    def __init__(self, backend: HFTokenizer, *, bos_id: int | None, eos_ids: Iterable[int],
                 chat_template: str | None, bos_token: str = "", eos_token: str = "",
                 template_source: str = "the chat template") -> None:
        self.backend = backend
        self.bos_id = bos_id
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self.chat_template = chat_template
        self.template_source = template_source  # the file it came from, named when it fails
        self._special = {"bos_token": bos_token, "eos_token": eos_token}

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def id_count(self) -> int:
        """One past the largest id the tokenizer can produce (the embedding rows it needs)."""
        return max(self.backend.get_vocab(with_added_tokens=True).values(), default=-1) + 1

    @property
    def fingerprint(self) -> str:
        """A short digest of everything that turns text into prompt ids (vocabulary, merges, normaliser,
        chat template, special tokens): an evaluation's records are valid only for it, like the weights."""
        digest = hashlib.sha256(self.backend.to_str().encode())
        digest.update(json.dumps([self.chat_template, self.bos_id, sorted(self.eos_ids), self._special]).encode())
        return digest.hexdigest()[:16]

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Ids of ``text``; ValueError for text no tokenizer can encode (a lone surrogate, which is how a
        non-UTF-8 byte in a command-line argument or a file read with surrogateescape reaches Python)."""
        try:
            ids = self.backend.encode(text, add_special_tokens=False).ids
        except TypeError:
            if not isinstance(text, str):
                raise
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ValueError(f"text to tokenize is not valid UTF-8: {text[err.start]!r} at position {err.start} "
                                 "(a non-UTF-8 byte in the prompt or its file?)") from None
            raise
        if add_bos:
            if self.bos_id is None:
                raise ValueError("this tokenizer has no BOS token")
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True,
                            enable_thinking: bool = False) -> str:
        """Render the checkpoint's Jinja chat template the way transformers does.

        ``enable_thinking`` is off by default: Qwen3's template then closes an empty ``<think>``
        block, so evaluation answers directly (its own default would think first); templates
        that never read the variable render the same either way. A template that fails (syntax,
        an undefined name, the sandbox refusing an attribute, its own ``raise_exception``) is a
        ValueError naming the file it came from.
        """
        if not self.chat_template:
            raise ValueError("this checkpoint has no chat template; use plain prompts (--no-chat)")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        try:
            template = env.from_string(self.chat_template)
            return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                   enable_thinking=enable_thinking, **self._special)
        except Exception as err:  # the template is the checkpoint's code: any error it raises is bad input
            raise ValueError(f"{self.template_source}: chat template failed ({type(err).__name__}: "
                             f"{one_line(err)}); fix it or use plain prompts (--no-chat)") from err


def _raise_template_error(message: str) -> None:
    raise ValueError(f"raise_exception({message!r})")


def from_gguf_metadata(fields: dict[str, Any], source: str) -> Tokenizer:
    """Rebuild the byte-level BPE tokenizer llama.cpp stored in a GGUF file."""
    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"{source}: unsupported GGUF tokenizer model {model!r} (only byte-level BPE 'gpt2')")
    tokens: list[str] = fields["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    types = fields.get("tokenizer.ggml.token_type", [1] * len(tokens))
    backend = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                     fuse_unk=False, byte_fallback=False))
    pre = fields.get("tokenizer.ggml.pre", "default")
    backend.pre_tokenizer = _pre_tokenizer(pre)
    if pre in _NFC:
        backend.normalizer = normalizers.NFC()
    backend.decoder = decoders.ByteLevel()
    special = [t for t, kind in zip(tokens, types) if kind in (_CONTROL, _USER_DEFINED)]
    backend.add_special_tokens(special)
    bos = fields.get("tokenizer.ggml.bos_token_id")
    eos = fields.get("tokenizer.ggml.eos_token_id")
    return Tokenizer(
        backend, bos_id=bos, eos_ids=[] if eos is None else [eos],
        chat_template=fields.get("tokenizer.chat_template"),
        bos_token=tokens[bos] if bos is not None else "", eos_token=tokens[eos] if eos is not None else "",
        template_source=f"{source} (tokenizer.chat_template)",
    )


def _pre_tokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "smollm":  # SmolLM's tokenizer.json: every digit alone, then GPT-2 byte level
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if name in _DIGITS:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_SPLIT.replace("{digits}", _DIGITS[name])), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    if name in ("default", "gpt2", "gpt-2"):
        return byte_level
    raise ValueError(f"unsupported GGUF pre-tokenizer {name!r} (supported: smollm, llama-bpe, qwen2, gpt2)")


def from_hf_files(tokenizer_json: str, tokenizer_config: dict[str, Any], eos_ids: Iterable[int],
                  config_source: str = "tokenizer_config.json") -> Tokenizer:
    """An HF checkpoint's tokenizer.json plus the template and special tokens of tokenizer_config.json
    (``config_source``: where that dict was read, named in errors)."""
    try:
        backend = HFTokenizer.from_file(tokenizer_json)
    except Exception as err:  # the Rust tokenizers library raises plain Exception for a damaged file
        raise ValueError(f"{tokenizer_json}: not a readable tokenizer.json ({one_line(err)})") from err
    bos_token, eos_token = (_token_text(tokenizer_config.get(k), config_source, k) for k in ("bos_token", "eos_token"))
    for name, token in (("bos_token", bos_token), ("eos_token", eos_token)):
        if token and backend.token_to_id(token) is None:  # dropped, generation would never stop at it
            raise ValueError(f"{config_source}: {name} {token!r} is not in the vocabulary of {tokenizer_json}")
    bos_id = backend.token_to_id(bos_token) if bos_token else None
    eos = set(eos_ids)
    if eos_token:
        eos.add(backend.token_to_id(eos_token))
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # several named templates: the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return Tokenizer(backend, bos_id=bos_id, eos_ids=eos, chat_template=template,
                     bos_token=bos_token or "", eos_token=eos_token or "", template_source=config_source)


def _token_text(value: Any, source: str, key: str) -> str | None:
    text = value.get("content") if isinstance(value, dict) else value
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{source}: {key} must be a string or an object with content, got {value!r}")
    return text
