"""One benchmark item, split the way a RAG prefill needs it."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Sample:
    """prompt = instruction + context + question + answer_prefix.

    ``context`` is the document text that is cut into chunks and cached; the instruction
    before it joins the cached prefix segment, the question and answer prefix after it form
    the always-computed query segment.
    """

    task: str
    index: int
    instruction: str
    context: str
    question: str
    answer_prefix: str
    references: tuple[str, ...]
    metric: str
    max_new_tokens: int
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return self.instruction + self.context + self.question + self.answer_prefix
