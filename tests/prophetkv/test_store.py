"""Chunk store: round trips, corruption detection, crash safety, LRU cap, two processes."""

import logging
import multiprocessing
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prophetkv_jax.store import ChunkStore, EntrySpec, SegmentKV, chunk_key, model_fingerprint


def segment(seed: int, length: int = 5) -> SegmentKV:
    rng = np.random.default_rng(seed)
    return SegmentKV(
        k=rng.normal(size=(2, length, 2, 4)).astype(np.float32),
        v=rng.normal(size=(2, length, 2, 4)).astype(np.float32),
    )


def key(n: int) -> str:
    return chunk_key("fp", np.arange(n), False, "float32")


def test_key_depends_on_every_field():
    base = chunk_key("fp", np.arange(4), False, "float32")
    assert len({base, chunk_key("fp2", np.arange(4), False, "float32"),
                chunk_key("fp", np.arange(1, 5), False, "float32"),
                chunk_key("fp", np.arange(4), True, "float32"),
                chunk_key("fp", np.arange(4), False, "float16")}) == 5


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_round_trip_through_disk_keeps_dtype_bits_and_length(tmp_path, dtype):
    entry = SegmentKV(*(np.asarray(x, jnp.dtype(dtype)) for x in (segment(0).k, segment(0).v)), num_tokens=3)
    ChunkStore(tmp_path, dtype=dtype).put("a" * 64, entry)
    loaded = ChunkStore(tmp_path, dtype=dtype).get("a" * 64)  # fresh store: memory is empty
    assert (loaded.dtype, loaded.length) == (dtype, 3)  # bf16 stays bf16: no conversion on the way
    np.testing.assert_array_equal(np.asarray(loaded.k), np.asarray(jnp.asarray(entry.k)))
    np.testing.assert_array_equal(np.asarray(loaded.v), np.asarray(jnp.asarray(entry.v)))


def test_a_store_with_a_dtype_refuses_entries_of_another():
    with pytest.raises(ValueError, match="holds float16 entries, got float32"):
        ChunkStore(dtype="float16").put(key(1), segment(1))


def test_memory_tiers_return_the_stored_objects():
    device_entry = SegmentKV(jnp.asarray(segment(1).k), jnp.asarray(segment(1).v))
    store = ChunkStore()
    store.put(key(1), device_entry)
    assert store.get(key(1)) is device_entry
    host_only = ChunkStore(max_device_bytes=0)
    host_only.put(key(2), segment(2))  # the host tier keeps its own copy, in the backend's host memory
    held = host_only.get(key(2))
    assert host_only.get(key(2)) is held and held.k.sharding.memory_kind == host_only.host_memory_kind
    np.testing.assert_array_equal(np.asarray(held.v), segment(2).v)


def test_a_host_hit_is_promoted_to_the_device_tier_once():
    store = ChunkStore()
    store.put(key(1), segment(1))  # a host array enters the host tier
    assert store.memory_bytes() == {"device": 0, "host": segment(1).nbytes}
    promoted = store.get(key(1))
    assert isinstance(promoted.k, jax.Array) and store.get(key(1)) is promoted
    np.testing.assert_array_equal(np.asarray(promoted.k), segment(1).k)
    assert store.memory_bytes() == {"device": segment(1).nbytes, "host": segment(1).nbytes}


def test_device_evictions_move_to_host_and_host_evictions_are_reported_once(caplog):
    size = segment(1).nbytes
    store = ChunkStore(max_device_bytes=2 * size, max_host_bytes=2 * size)
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        for n in range(1, 6):
            store.put(key(n), SegmentKV(jnp.asarray(segment(n).k), jnp.asarray(segment(n).v)))
    assert store.memory_bytes() == {"device": 2 * size, "host": 2 * size} and store.dropped == 1
    assert store.get(key(1)) is None  # the least recently used left both tiers
    assert isinstance(store.get(key(2)).k, jax.Array)  # demoted to host, promoted back on the hit
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "fits no tier" in messages[0] and "--store-host-gib" in messages[0]


def test_with_a_disk_tier_nothing_is_reported_as_dropped(tmp_path, caplog):
    size = segment(1).nbytes
    store = ChunkStore(tmp_path, max_device_bytes=size, max_host_bytes=size)
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        for n in range(1, 5):
            store.put(key(n), segment(n))
    assert store.dropped == 0 and not caplog.records
    np.testing.assert_array_equal(store.get(key(1)).k, segment(1).k)  # from disk


def test_an_entry_of_the_wrong_shape_is_refused_and_removed(tmp_path, caplog):
    store = ChunkStore(tmp_path)
    store.put(key(1), segment(1, length=5))
    spec = EntrySpec((2, 6, 2, 4), 6, "float32")  # the chunk has 6 tokens: the entry is not its KV
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        assert store.get(key(1), expect=spec) is None
        assert ChunkStore(tmp_path).get(key(1), expect=spec) is None  # gone from disk too
    assert not store.path_for(key(1)).exists() and store.memory_bytes() == {"device": 0, "host": 0}
    assert "does not fit this chunk and model" in caplog.records[0].getMessage()
    assert store.get(key(1), expect=EntrySpec((2, 5, 2, 4), 5, "float32")) is None  # a miss now


def test_a_refused_entry_is_not_promoted_first():
    """A host entry that does not fit its chunk is refused where it is: promoting it would push a
    good device entry down to the host tier before the refusal."""
    size = segment(1).nbytes
    store = ChunkStore(max_device_bytes=size)
    good = SegmentKV(jnp.asarray(segment(2).k), jnp.asarray(segment(2).v))
    store.put(key(2), good)
    store.put(key(1), segment(1))  # a host array: host tier
    assert store.get(key(1), expect=EntrySpec((2, 6, 2, 4), 6, "float32")) is None
    assert store.memory_bytes() == {"device": size, "host": 0} and store.get(key(2)) is good


def test_corrupt_byte_is_reported_once_and_the_entry_dropped(tmp_path, caplog):
    store = ChunkStore(tmp_path)
    store.put(key(3), segment(1))
    path = store.path_for(key(3))
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF  # inside the tensor bytes: only the checksum can notice
    path.write_bytes(bytes(data))
    fresh = ChunkStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        assert fresh.get(key(3)) is None
        assert fresh.get(key(3)) is None
    assert sum("corrupt entry" in r.getMessage() for r in caplog.records) == 1
    assert not path.exists()


def test_truncated_file_is_a_miss(tmp_path):
    store = ChunkStore(tmp_path)
    store.put(key(4), segment(2))
    path = store.path_for(key(4))
    path.write_bytes(path.read_bytes()[:100])
    assert ChunkStore(tmp_path).get(key(4)) is None


def _die_during_fsync(root: str, entry_key: str) -> None:
    def killed(fd):  # the payload is in the temp file, the rename has not happened
        os.kill(os.getpid(), signal.SIGKILL)

    os.fsync = killed
    ChunkStore(root).put(entry_key, segment(3, length=2000))


def test_writer_killed_mid_write_leaves_no_entry(tmp_path):
    process = multiprocessing.get_context("spawn").Process(target=_die_during_fsync, args=(str(tmp_path), key(5)))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    store = ChunkStore(tmp_path)
    assert not store.path_for(key(5)).exists()
    assert store.get(key(5)) is None
    leftovers = list(tmp_path.glob("*/.*.tmp"))
    assert leftovers, "the killed writer should have left its temp file behind"
    store.put(key(5), segment(3))  # a later writer still succeeds
    assert ChunkStore(tmp_path).get(key(5)) is not None


def test_disk_cap_evicts_least_recently_used(tmp_path):
    store = ChunkStore(tmp_path / "s")
    store.put(key(1), segment(1))
    size = store.disk_bytes()
    capped = ChunkStore(tmp_path / "s", max_disk_bytes=int(2.5 * size))
    capped.put(key(2), segment(2))
    os.utime(capped.path_for(key(1)), (1, 1))  # make entry 1 the oldest ...
    os.utime(capped.path_for(key(2)), (2, 2))
    assert ChunkStore(tmp_path / "s").get(key(1)) is not None  # ... then read it: most recent now
    capped.put(key(3), segment(3))
    assert capped.path_for(key(1)).exists()
    assert not capped.path_for(key(2)).exists()
    assert capped.path_for(key(3)).exists()


def _hammer(root: str, seed: int, rounds: int, failures) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        n = int(rng.integers(1, 6))
        store = ChunkStore(root, max_disk_bytes=40_000)  # small cap: evictions race with reads
        got = store.get(key(n))
        if got is not None and not np.array_equal(got.k, segment(n, length=50).k):
            failures.put(n)
        store.put(key(n), segment(n, length=50))


def test_two_processes_reading_and_writing_never_see_a_bad_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    failures = ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(str(tmp_path), s, 150, failures)) for s in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert failures.empty()


@pytest.mark.parametrize(
    "crafted", ["../x", "../" * 3 + "a" * 56, "a" * 63 + "/", "A" * 64, "/etc/passwd", "", "a" * 65])
def test_crafted_keys_are_refused_before_any_file_is_touched(tmp_path, crafted):
    root = tmp_path / "store"
    outside = tmp_path / "x"
    outside.write_text("precious")
    store = ChunkStore(root)
    with pytest.raises(ValueError, match="64-character lowercase hex digest"):
        store.put(crafted, segment(1))
    with pytest.raises(ValueError, match="64-character lowercase hex digest"):
        store.get(crafted)
    assert outside.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["store", "x"]


def test_a_path_that_resolves_outside_the_root_is_refused(tmp_path):
    store = ChunkStore(tmp_path / "store")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "store" / "ab").symlink_to(tmp_path / "elsewhere")  # a planted link inside the root
    with pytest.raises(ValueError, match="outside the store root"):
        store.put("ab" + "0" * 62, segment(1))
    assert not any((tmp_path / "elsewhere").iterdir())


def test_eviction_and_cleanup_never_follow_a_link_out_of_the_root(tmp_path):
    root, outside = tmp_path / "store", tmp_path / "elsewhere"
    outside.mkdir()
    precious = outside / f"{key(9)}.safetensors"
    precious.write_text("precious")
    old_temp = outside / "old.tmp"
    old_temp.write_text("precious")
    for path in (precious, old_temp):
        os.utime(path, (1, 1))  # the oldest file, and a temporary an hour stale, if they were inside
    store = ChunkStore(root, max_disk_bytes=1)
    (root / "cd").symlink_to(outside)  # a linked folder ...
    (root / "ef").mkdir()
    (root / "ef" / f".{key(8)}.safetensors.x.tmp").symlink_to(old_temp)  # ... and a linked temporary
    for n in (1, 2):
        store.put(key(n), segment(n))
    assert precious.read_text() == old_temp.read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == sorted([precious.name, old_temp.name])
    assert not store.path_for(key(1)).exists() and store.path_for(key(2)).exists()  # the cap still applies inside


def _unusable_root(tmp_path, kind, read_only):
    if kind == "under a file":
        (tmp_path / "file").write_text("")
        return tmp_path / "file" / "store"
    return read_only(tmp_path / "ro")


@pytest.mark.parametrize("kind", ["under a file", "read-only"])
def test_unusable_root_falls_back_to_memory_with_one_warning(tmp_path, caplog, read_only, kind):
    root = _unusable_root(tmp_path, kind, read_only)
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        store = ChunkStore(root)
        for n in (1, 2):
            store.put(key(n), segment(n))
    assert store.root is None
    np.testing.assert_array_equal(store.get(key(2)).k, segment(2).k)
    assert [r.getMessage().count("in memory only") for r in caplog.records] == [1]


def test_root_that_breaks_after_start_falls_back_to_memory(tmp_path, caplog):
    store = ChunkStore(tmp_path / "store")
    (tmp_path / "store").rmdir()
    (tmp_path / "store").write_text("")  # the folder was replaced by a file
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        store.put(key(1), segment(1))
        store.put(key(2), segment(2))
    assert store.root is None and store.get(key(1)) is not None
    assert sum("in memory only" in r.getMessage() for r in caplog.records) == 1


def test_fingerprint_changes_when_one_embedding_value_changes():
    rng = np.random.default_rng(0)
    params = {"embed": rng.normal(size=(1024, 64)).astype(np.float32), "norm": np.ones(64, np.float32)}
    edited = {**params, "embed": params["embed"].copy()}
    edited["embed"][3, 5] += 1e-3  # one row, one value, between any strided samples
    assert model_fingerprint("cfg", params) == model_fingerprint("cfg", {k: v.copy() for k, v in params.items()})
    assert model_fingerprint("cfg", edited) != model_fingerprint("cfg", params)
    assert model_fingerprint("other cfg", params) != model_fingerprint("cfg", params)
