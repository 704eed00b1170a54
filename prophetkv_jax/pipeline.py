"""RAG prefill with reused chunk caches: ``engine.prefill(prompt, method, ratio)`` then ``generate``.

A prefill is four steps, each one module: ``layout`` places the segments, the chunk KVs come from
the ``store`` (encoded on a miss; those in host memory start their copies to the device at once, see
``host_memory``), ``assembly`` lays them out in one cache, and ``selection`` picks
the rows the method recomputes and recomputes them with the query, whose last row gives the first
token. Full prefill is the reference that ignores the store.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from prophetkv_jax import selection, selectors
from prophetkv_jax.assembly import assemble, blank_cache, cache_capacity, check_recyclable
from prophetkv_jax.buckets import bucket_size
from prophetkv_jax.chunks import encode_segment, segment_spec
from prophetkv_jax.decode import decode_from_cache
from prophetkv_jax.host_memory import to_device
from prophetkv_jax.layout import Layout, RagPrompt, lay_out
from prophetkv_jax.model import llama, sharding, weights
from prophetkv_jax.model.config import LlamaConfig
from prophetkv_jax.store import ChunkStore, EntrySpec, SegmentKV, chunk_key, model_fingerprint


@dataclasses.dataclass
class Prefill:
    """A prefilled request: the cache to decode from and the first generated token."""

    cache: llama.KVCache
    first_token: int
    last_logits: np.ndarray  # [V] logits of the last prompt row
    next_position: int  # where the first generated token goes
    selected: np.ndarray  # recomputed context positions (sorted)
    num_context: int
    timings: dict[str, float]
    from_store: tuple[bool, ...] = ()  # per stored segment (prefix, then chunks): served by the store, not encoded


DEFAULT_SPARE_BYTES = 2 * 2**30  # released caches kept for reuse, newest first


class Engine:
    """ProphetKV and its baselines over one model and one chunk store."""

    def __init__(
        self, params: llama.Params, config: LlamaConfig, store: ChunkStore | None = None,
        *, chunk_bos_id: int | None = None, max_new_tokens: int = 64, fingerprint: str | None = None,
        max_spare_bytes: int = DEFAULT_SPARE_BYTES,
    ) -> None:
        """``fingerprint``: ``model_fingerprint(config, params)`` when the caller already computed it
        (it hashes every weight byte, ~0.7 s for the default model); computed here otherwise.
        ``max_spare_bytes``: how much memory released caches may hold (see :meth:`release`).
        ``self.params`` are the weights as the model reads them: on CPU, 16-bit ones as their uint16 bits,
        sharing the caller's memory (``weights.bits_view``)."""
        self.params, self.config = weights.bits_view(params, config), config
        self.store = store if store is not None else ChunkStore()
        self.chunk_bos_id = chunk_bos_id
        self.max_new_tokens = max_new_tokens
        self.fingerprint = fingerprint if fingerprint is not None else model_fingerprint(config, params)
        self.mesh = sharding.mesh_of(params)  # weights split over devices: caches follow them
        self.max_spare_bytes = max_spare_bytes
        self._spares: list[llama.KVCache] = []  # released caches, newest last

    def _placed(self, cache: llama.KVCache) -> llama.KVCache:
        return sharding.place_cache(cache, self.config, self.mesh)

    def release(self, *prefills: Prefill) -> None:
        """Hand finished requests' caches back: later requests of the same capacity write into their
        memory, where a new cache costs a page fault per 4 KiB on CPU (more than assembling it). Those
        caches must not be used afterwards; the newest are kept, up to ``max_spare_bytes``."""
        for prefill in prefills:
            cache = prefill.cache
            check_recyclable(self.config, cache)
            if not cache.k.is_deleted() and all(cache.k is not spare.k for spare in self._spares):
                self._spares.append(cache)
        held = 0
        for i in reversed(range(len(self._spares))):
            held += self._spares[i].k.nbytes + self._spares[i].v.nbytes
            if held > self.max_spare_bytes:
                del self._spares[:i + 1]
                break

    def _spare(self, capacity: int) -> llama.KVCache | None:
        """A released cache of this capacity, taken from the pool."""
        for i, cache in enumerate(self._spares):
            if cache.capacity == capacity:
                return self._spares.pop(i)
        return None

    # -- layout and chunk caches --------------------------------------------------------

    def layout(self, prompt: RagPrompt) -> Layout:
        return lay_out(prompt, self.chunk_bos_id, self.config.max_position_embeddings, self.max_new_tokens)

    @property
    def store_dtype(self) -> str:
        """The dtype chunk KVs are stored in: the store's own, else the model's compute dtype."""
        return self.store.dtype or self.config.dtype

    def segment_kv(self, tokens: np.ndarray) -> SegmentKV:
        """The stored KV of one segment, computed and stored on a miss (or on a stored entry that
        does not fit this model and chunk)."""
        return self._segment_kv(tokens)[0]

    def _key_and_spec(self, tokens: np.ndarray) -> tuple[str, EntrySpec]:
        """The store key of a segment's KV and the shape a stored entry must have to be used."""
        dtype = self.store_dtype
        return (chunk_key(self.fingerprint, tokens, self.chunk_bos_id is not None, dtype),
                segment_spec(self.config, len(tokens), dtype))

    def _encoded(self, key: str, tokens: np.ndarray) -> SegmentKV:
        """A miss: the segment's KV, computed and stored under ``key``."""
        entry = encode_segment(self.params, self.config, tokens, self.store_dtype)
        self.store.put(key, entry)
        return entry

    def _segment_kv(self, tokens: np.ndarray) -> tuple[SegmentKV, bool]:
        """(segment_kv, whether the store served it)."""
        key, spec = self._key_and_spec(tokens)
        entry = self.store.get(key, expect=spec)
        return (entry, True) if entry is not None else (self._encoded(key, tokens), False)

    def _stored_segments(self, segments: list[np.ndarray]) -> tuple[list[SegmentKV], tuple[bool, ...],
                                                                     tuple[bool, ...]]:
        """(chunk KVs, whether the store served each, whether each is being copied to the device).

        Every lookup comes before any encoding: the copies of entries from the host and disk tiers
        are issued at once and run while the misses are encoded and the cache is cleared. A segment
        repeated in the prompt is encoded once; its later copies count as served."""
        keys = [self._key_and_spec(tokens) for tokens in segments]
        found = [self.store.fetch(key, expect=spec) for key, spec in keys]
        encoded: dict[str, SegmentKV] = {}
        entries, served = [], []
        for (key, _), tokens, hit in zip(keys, segments, found):
            if hit is None and key not in encoded:
                encoded[key] = self._encoded(key, tokens)
                entries.append(encoded[key])
                served.append(False)
            else:
                entries.append(to_device(hit[0]) if hit is not None else encoded[key])
                served.append(True)
        copied = tuple(hit is not None and hit[1] != "device" for hit in found)
        return entries, tuple(served), copied

    def precompute(self, prompt: RagPrompt) -> None:
        """Encode and store the prefix and every chunk (done offline in a RAG system)."""
        for segment in self.layout(prompt).segments[:-1]:
            if len(segment):
                self.segment_kv(segment)

    # -- prefill ------------------------------------------------------------------------

    def prefill(self, prompt: RagPrompt, method: str = "prophetkv", ratio: float = 0.2) -> Prefill:
        """Layout, the stored chunk KVs, assembly, the method's selection and recompute, the first token.

        ``full`` skips the store and assembly: every row is computed into a blank cache."""
        selection.check(method, ratio)
        layout = self.layout(prompt)
        capacity = cache_capacity([len(s) for s in layout.segments[:-1] if len(s)],
                                  layout.total + self.max_new_tokens)
        timings: dict[str, float] = {}
        from_store: tuple[bool, ...] = ()
        recycle = self._spare(capacity)
        clock = time.perf_counter()
        if method == "full":
            blank = blank_cache(self.config, capacity, recycle, overwritten=layout.total)
            logits, cache, selected = selection.full_prefill(self.params, self.config, layout, self._placed(blank))
        else:
            segments, from_store, copied = self._stored_segments([s for s in layout.segments[:-1] if len(s)])
            timings["store_read"] = time.perf_counter() - clock
            clock = time.perf_counter()  # TTFT counts compute and the copies' wait; the store read is apart
            cache = self._placed(assemble(self.config, segments, capacity, recycle, copied, timings))
            logits, cache, selected = selection.select_and_recompute(
                self.params, self.config, layout, cache, method, ratio, timings)
        logits, selected = jax.device_get((logits, selected))  # the request's one wait for the device
        timings["ttft"] = time.perf_counter() - clock
        last = logits[-1]
        return Prefill(
            cache=cache, first_token=int(np.argmax(last)), last_logits=last, next_position=layout.total,
            selected=np.asarray(selected[selected < layout.num_context], np.int64), num_context=layout.num_context,
            timings=timings, from_store=from_store,
        )

    # -- decoding -----------------------------------------------------------------------

    def generate(self, prefill: Prefill, max_new_tokens: int | None = None,
                 eos_ids: tuple[int, ...] = ()) -> list[int]:
        """Greedy continuation from a prefilled cache (the first token included)."""
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        if prefill.cache.k.is_deleted():
            raise ValueError("this prefill's cache was handed back with Engine.release and reused; prefill again")
        if limit > self.max_new_tokens:
            raise ValueError(f"max_new_tokens={limit} exceeds the engine's {self.max_new_tokens}")
        return decode_from_cache(
            self.params, self.config, prefill.cache, prefill.last_logits, prefill.next_position, limit, eos_ids
        )

    # -- diagnostics --------------------------------------------------------------------

    def oracle_scores(self, prompt: RagPrompt) -> np.ndarray:
        """The query's attention to each context row in a real full prefill (layer mean): one pass
        serves the oracle set at every ratio."""
        layout = self.layout(prompt)
        blank = self._placed(llama.KVCache.empty(self.config, bucket_size(layout.total)))
        return selection.oracle_scores(self.params, self.config, layout, blank)

    def oracle(self, prompt: RagPrompt, ratio: float, scores: np.ndarray | None = None) -> np.ndarray:
        """Top-k context rows by ``oracle_scores`` (computed here unless given)."""
        scores = self.oracle_scores(prompt) if scores is None else scores
        return selectors.top_k(scores, selectors.budget(ratio, len(scores)))

    def diagnose(self, prompt: RagPrompt, ratio: float = 0.2,
                 methods: tuple[str, ...] = ("cacheblend", "epic", "kvshare", "prophetkv")) -> dict:
        """Each method's selected rows and their overlap with the oracle set (crowding-out)."""
        oracle = self.oracle(prompt, ratio)
        report = {"oracle": oracle}
        for method in methods:
            selected = self.prefill(prompt, method, ratio).selected
            overlap = len(np.intersect1d(selected, oracle)) / max(1, len(oracle))
            report[method] = {"selected": selected, "oracle_overlap": overlap}
        return report
