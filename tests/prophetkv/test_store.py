"""Chunk store: round trips, corruption detection, crash safety, LRU cap, two processes."""

import logging
import multiprocessing
import os
import signal

import numpy as np
import pytest

from prophetkv_jax.store import ChunkStore, SegmentKV, chunk_key


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


@pytest.mark.parametrize(("dtype", "atol"), [("float32", 0.0), ("float16", 2e-3), ("bfloat16", 2e-2)])
def test_round_trip_through_disk(tmp_path, dtype, atol):
    entry = segment(0)
    ChunkStore(tmp_path, dtype=dtype).put("a" * 64, entry)
    loaded = ChunkStore(tmp_path, dtype=dtype).get("a" * 64)  # fresh store: memory is empty
    np.testing.assert_allclose(loaded.k, entry.k, atol=atol, rtol=atol)
    np.testing.assert_allclose(loaded.v, entry.v, atol=atol, rtol=atol)


def test_corrupt_byte_is_reported_once_and_the_entry_dropped(tmp_path, caplog):
    store = ChunkStore(tmp_path)
    store.put(key(3), segment(1))
    path = store.path_for(key(3))
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF  # inside the tensor bytes: only the checksum can notice
    path.write_bytes(bytes(data))
    fresh = ChunkStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax.store"):
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
