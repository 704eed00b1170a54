"""Where a RAG prompt's segments sit: the first step of a prefill.

A prompt is a prefix segment (cached like a chunk), chunks in retrieval order, and a query
segment that is always computed. Laid out, segment i starts at global position ``starts[i]``,
which is also its slot in the assembled cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RagPrompt:
    """Token ids of the three parts of a RAG prompt."""

    prefix: np.ndarray
    chunks: tuple[np.ndarray, ...]
    query: np.ndarray

    def __post_init__(self) -> None:
        if len(self.query) == 0:
            raise ValueError("the query segment must hold at least one token (it produces the answer)")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the segments sit in the assembled prompt."""

    segments: tuple[np.ndarray, ...]  # prefix (maybe empty), chunks, query
    starts: tuple[int, ...]

    @property
    def num_context(self) -> int:
        return self.starts[-1]

    @property
    def total(self) -> int:
        return self.starts[-1] + len(self.segments[-1])

    def tokens(self) -> np.ndarray:
        return np.concatenate(self.segments).astype(np.int32)


def lay_out(prompt: RagPrompt, chunk_bos_id: int | None, context_limit: int, new_tokens: int) -> Layout:
    """The prompt's segments in order, each chunk opened by ``chunk_bos_id`` when given; refused when
    the prompt and ``new_tokens`` answer tokens would pass the model's ``context_limit``."""
    chunks = [np.asarray(c, np.int32) for c in prompt.chunks]
    if chunk_bos_id is not None:
        chunks = [np.concatenate([[chunk_bos_id], c]).astype(np.int32) for c in chunks]
    segments = [np.asarray(prompt.prefix, np.int32), *chunks, np.asarray(prompt.query, np.int32)]
    starts = np.concatenate([[0], np.cumsum([len(s) for s in segments[:-1]])]).tolist()
    layout = Layout(tuple(segments), tuple(int(s) for s in starts))
    if layout.total + new_tokens > context_limit:
        raise ValueError(
            f"prompt of {layout.total} tokens + {new_tokens} new tokens exceeds the "
            f"model's context of {context_limit} tokens"
        )
    return layout
