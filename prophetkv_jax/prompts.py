"""Turn a benchmark sample into the three token segments of a RAG prompt.

The chat template is rendered once around a placeholder for the context, so its opening
tokens (system prompt, user header) join the cached prefix segment and its closing tokens
(end of turn, assistant header, answer prefix) join the always-computed query segment.
The context is tokenised once and cut into fixed-size chunks, each cached on its own.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from prophetkv_jax.layout import RagPrompt

_PLACEHOLDER = "\u2063<<context>>\u2063"  # never produced by a tokenizer's decode of real text


class PromptTokenizer(Protocol):
    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str: ...


def split_chunks(tokens: np.ndarray, chunk_tokens: int) -> tuple[np.ndarray, ...]:
    """Consecutive pieces of ``chunk_tokens`` tokens (the last one may be shorter)."""
    if chunk_tokens <= 0:
        raise ValueError(f"--chunk-tokens must be a positive number of tokens, got {chunk_tokens}")
    tokens = np.asarray(tokens, np.int32)
    return tuple(tokens[i : i + chunk_tokens] for i in range(0, len(tokens), chunk_tokens))


def truncate_middle(tokens: np.ndarray, limit: int) -> np.ndarray:
    """Keep the first and last limit/2 tokens of an over-long sequence."""
    if len(tokens) <= limit:
        return tokens
    head = limit // 2
    return np.concatenate([tokens[:head], tokens[len(tokens) - (limit - head):]])


def chat_around(tokenizer: PromptTokenizer, instruction: str, question: str) -> tuple[str, str]:
    """(opening, closing) of the chat template around a user turn ``instruction`` + context + ``question``:
    what goes before the context (instruction included) and after it (question and the assistant's turn)."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction + _PLACEHOLDER + question}], add_generation_prompt=True
    )
    if rendered.count(_PLACEHOLDER) != 1:
        raise ValueError("the chat template altered the user message; rerun with --no-chat")
    before, after = rendered.split(_PLACEHOLDER)
    return before, after


def build_rag_prompt(
    tokenizer: PromptTokenizer, instruction: str, context: str, question: str, answer_prefix: str,
    chunk_tokens: int, chat: bool = True, max_prompt_tokens: int | None = None,
) -> RagPrompt:
    """prefix = [template opening +] instruction; chunks = context; query = question [+ closing] + answer prefix.

    With ``max_prompt_tokens``, an over-long context loses its middle (LongBench's truncation).
    """
    if chat:
        before, after = chat_around(tokenizer, instruction, question)
        prefix_ids = tokenizer.encode(before, add_bos=False)
        query_ids = tokenizer.encode(after + answer_prefix, add_bos=False)
    else:
        prefix_ids = tokenizer.encode(instruction, add_bos=True)
        query_ids = tokenizer.encode(question + answer_prefix, add_bos=False)
    context_ids = np.asarray(tokenizer.encode(context, add_bos=False), np.int32)
    if max_prompt_tokens is not None:
        room = max_prompt_tokens - len(prefix_ids) - len(query_ids)
        if room <= 0:
            raise ValueError(f"the prompt template alone exceeds {max_prompt_tokens} tokens; raise --context")
        context_ids = truncate_middle(context_ids, room)
    return RagPrompt(
        prefix=np.asarray(prefix_ids, np.int32),
        chunks=split_chunks(context_ids, chunk_tokens),
        query=np.asarray(query_ids, np.int32),
    )
