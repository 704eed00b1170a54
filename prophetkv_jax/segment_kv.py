"""One segment's chunk KV as it travels between the store's tiers, and what a chunk expects of it."""

from __future__ import annotations

import dataclasses
from typing import Any

STORE_DTYPES = ("float32", "float16", "bfloat16")


def check_dtype(dtype: str) -> None:
    if dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype must be one of {STORE_DTYPES}, got {dtype!r}")


@dataclasses.dataclass(frozen=True)
class SegmentKV:
    """K (before RoPE) and V [L, rows, KV, hd] of one segment encoded alone at local positions.

    Rows past ``num_tokens`` are padding: segments travel in row buckets, so assembling a
    new chunk length compiles nothing. The arrays are NumPy (host) or JAX (device) arrays.
    """

    k: Any
    v: Any
    num_tokens: int | None = None  # None: every row is a token

    @property
    def length(self) -> int:
        return self.k.shape[1] if self.num_tokens is None else self.num_tokens

    @property
    def nbytes(self) -> int:
        return int(self.k.nbytes) + int(self.v.nbytes)

    @property
    def dtype(self) -> str:
        return str(self.k.dtype)


@dataclasses.dataclass(frozen=True)
class EntrySpec:
    """What an entry must look like to be served for one chunk of one model."""

    shape: tuple[int, ...]  # [L, rows, KV, hd]
    length: int
    dtype: str

    def mismatch(self, entry: SegmentKV) -> str | None:
        """Why ``entry`` cannot be this chunk's KV, or None."""
        found = (tuple(entry.k.shape), tuple(entry.v.shape), entry.length, entry.dtype, str(entry.v.dtype))
        wanted = (self.shape, self.shape, self.length, self.dtype, self.dtype)
        if found == wanted:
            return None
        return (f"k {found[0]}, v {found[1]}, {found[2]} tokens, {found[3]}/{found[4]}; expected "
                f"{self.shape}, {self.length} tokens, {self.dtype}")
