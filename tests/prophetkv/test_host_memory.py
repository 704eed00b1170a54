"""Host-tier memory: the kind chosen from what the backend offers, the copies, and prefills through
the host and disk tiers equal to the device tier's bit for bit."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prophetkv_jax import assembly, host_memory
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import tiny_config
from prophetkv_jax.pipeline import Engine, RagPrompt
from prophetkv_jax.store import ChunkStore, SegmentKV

CONFIG = tiny_config(num_layers=2)


def fake_device(*kinds: str) -> types.SimpleNamespace:
    memories = [types.SimpleNamespace(kind=kind) for kind in kinds]
    return types.SimpleNamespace(addressable_memories=lambda: memories)


@pytest.mark.parametrize(("offered", "chosen"), [
    (("device", "pinned_host", "unpinned_host"), "pinned_host"),
    (("unpinned_host", "device", "pinned_host"), "pinned_host"),
    (("device", "unpinned_host"), "unpinned_host"),
    (("device",), "numpy"),
])
def test_the_host_kind_is_the_best_one_the_backend_offers(offered, chosen):
    assert host_memory.host_memory_kind(fake_device(*offered)) == chosen


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_entries_go_to_host_memory_and_back_unchanged(dtype):
    rng = np.random.default_rng(0)
    k, v = (jnp.asarray(rng.standard_normal((2, 8, 2, 4), np.float32), dtype) for _ in range(2))
    kind = host_memory.default_host_kind()
    assert kind == host_memory.host_memory_kind(jax.devices()[0])
    held = host_memory.to_host(SegmentKV(k, v, 5))
    assert not host_memory.on_device(held) and host_memory.to_host(held) is held
    if kind != host_memory.NUMPY:  # held in the backend's host memory, not copied out to NumPy
        assert held.k.sharding.memory_kind == held.v.sharding.memory_kind == kind
    back = host_memory.to_device(held)
    assert host_memory.on_device(back) and host_memory.to_device(back) is back and back.length == 5
    for before, after in ((k, back.k), (v, back.v)):
        assert after.dtype == before.dtype
        np.testing.assert_array_equal(np.asarray(after).view(np.uint8), np.asarray(before).view(np.uint8))


def test_a_numpy_entry_reaches_the_device():
    entry = SegmentKV(np.ones((1, 8, 1, 2), np.float32), np.zeros((1, 8, 1, 2), np.float32))
    moved = host_memory.to_device(entry)
    assert host_memory.on_device(moved) and not host_memory.on_device(entry)
    assert moved.k.sharding.memory_kind == jax.devices()[0].default_memory().kind


@pytest.fixture(scope="module")
def params():
    return llama.init_params(CONFIG, jax.random.PRNGKey(3))


def make_prompt(seed: int) -> RagPrompt:
    rng = np.random.default_rng(seed)
    tokens = lambda n: rng.integers(0, CONFIG.vocab_size, n)  # noqa: E731
    return RagPrompt(prefix=tokens(6), chunks=(tokens(13), tokens(9), tokens(11)), query=tokens(5))


@pytest.mark.parametrize("method", ["prophetkv", "epic"])
def test_prefills_from_the_host_and_disk_tiers_equal_the_device_tiers_bit_for_bit(params, tmp_path, method):
    prompt = make_prompt(1)
    writer = Engine(params, CONFIG, ChunkStore(tmp_path), max_new_tokens=8)
    writer.precompute(prompt)
    device_tier = writer.prefill(prompt, method)
    host_tier = Engine(params, CONFIG, ChunkStore(max_device_bytes=0), max_new_tokens=8,
                       fingerprint=writer.fingerprint)
    host_tier.precompute(prompt)
    from_host = host_tier.prefill(prompt, method)
    from_disk = Engine(params, CONFIG, ChunkStore(tmp_path), max_new_tokens=8,
                       fingerprint=writer.fingerprint).prefill(prompt, method)
    assert all(device_tier.from_store) and all(from_host.from_store) and all(from_disk.from_store)
    assert device_tier.timings["copy_wait"] == 0.0  # every entry was on the device already: nothing waited for
    assert from_host.timings["copy_wait"] > 0.0 and from_disk.timings["copy_wait"] > 0.0
    for other in (from_host, from_disk):
        np.testing.assert_array_equal(other.last_logits, device_tier.last_logits)
        np.testing.assert_array_equal(other.selected, device_tier.selected)
        for name in ("k", "v", "positions", "valid"):
            np.testing.assert_array_equal(np.asarray(getattr(other.cache, name)),
                                          np.asarray(getattr(device_tier.cache, name)))


def test_a_repeated_chunk_is_encoded_once_and_then_served(params):
    """Lookups come before encoding; a chunk that appears twice must still be encoded only once."""
    rng = np.random.default_rng(2)
    chunk = rng.integers(0, CONFIG.vocab_size, 9)
    prompt = RagPrompt(prefix=rng.integers(0, CONFIG.vocab_size, 6), chunks=(chunk, chunk),
                       query=rng.integers(0, CONFIG.vocab_size, 5))
    result = Engine(params, CONFIG, max_new_tokens=8).prefill(prompt, "prophetkv")
    assert result.from_store == (False, False, True)


def test_assemble_refuses_copied_flags_that_do_not_match_the_segments(params):
    engine = Engine(params, CONFIG, max_new_tokens=8)
    segments = [engine.segment_kv(s) for s in engine.layout(make_prompt(4)).segments[:-1]]
    capacity = assembly.cache_capacity([s.length for s in segments], 64)
    with pytest.raises(ValueError, match="copied has 1 flags for 4 segments"):
        assembly.assemble(CONFIG, segments, capacity, copied=(True,), timings={})
