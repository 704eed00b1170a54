"""Chunk store disk tier against a hostile or careless file system: planted lock files, folders where
entries belong, a running size instead of a rescan per put, and a store shared by two users."""

import logging
import multiprocessing
import os
import shutil
import stat
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from prophetkv_jax import disk_tier
from prophetkv_jax.store import ChunkStore, SegmentKV, chunk_key


def segment(seed: int, length: int = 5) -> SegmentKV:
    rng = np.random.default_rng(seed)
    return SegmentKV(k=rng.normal(size=(2, length, 2, 4)).astype(np.float32),
                     v=rng.normal(size=(2, length, 2, 4)).astype(np.float32))


def key(n: int) -> str:
    return chunk_key("fp", np.arange(n), False, "float32")


def test_a_lock_planted_as_a_link_is_never_followed(tmp_path, caplog):
    root, outside = tmp_path / "store", tmp_path / "outside"
    root.mkdir()
    (root / ".lock").symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        store = ChunkStore(root)
        store.put(key(1), segment(1))
    assert not outside.exists()  # nothing created or appended to outside the root
    assert store.root is None and store.get(key(1)) is not None  # memory only, still serving
    assert [".lock" in r.getMessage() and "in memory only" in r.getMessage() for r in caplog.records] == [True]


def test_a_lock_that_is_a_fifo_never_blocks_a_put(tmp_path, caplog):
    root = tmp_path / "store"
    root.mkdir()
    fifo = root / ".lock"
    os.mkfifo(fifo)
    done = threading.Event()

    def put() -> None:
        store = ChunkStore(root)
        store.put(key(1), segment(1))
        assert store.root is None and store.get(key(1)) is not None
        done.set()

    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        worker = threading.Thread(target=put, daemon=True)
        worker.start()
        finished = done.wait(20)
        if not finished:  # release the blocked open so the thread can end
            release = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            worker.join(20)
            os.close(release)
    assert finished, "a put blocked on a FIFO planted as the store's lock"
    assert any("not a regular file" in r.getMessage() for r in caplog.records)


def test_a_folder_where_an_entry_belongs_is_a_warned_miss_and_bypassed(tmp_path, caplog):
    store = ChunkStore(tmp_path / "store", max_disk_bytes=1)  # every put evicts: the folder must survive it
    blocker = store.path_for(key(1))
    blocker.mkdir(parents=True)
    (blocker / "x").write_text("someone's")
    with caplog.at_level(logging.WARNING, logger="prophetkv_jax"):
        assert store.get(key(1)) is None
        store.put(key(1), segment(1))
        store.put(key(2), segment(2))
        assert ChunkStore(tmp_path / "store").get(key(1)) is None
    assert store.root is not None  # the disk tier stays in use for every other entry
    np.testing.assert_array_equal(store.get(key(1)).k, segment(1).k)  # served from memory
    assert ChunkStore(tmp_path / "store").get(key(2)) is not None
    assert (blocker / "x").read_text() == "someone's"
    warned = [r.getMessage() for r in caplog.records]
    assert warned and all(str(blocker) in m and "not a regular file" in m for m in warned)


def _count_scans(monkeypatch) -> list[Path]:
    """Record every listing of the store's folders (a scan costs one stat per entry)."""
    scans: list[Path] = []
    real = disk_tier._real_files

    def counted(root, name):
        scans.append(root)
        return real(root, name)

    monkeypatch.setattr(disk_tier, "_real_files", counted)
    return scans


def test_puts_below_the_cap_do_not_rescan_the_store(tmp_path, monkeypatch):
    store = ChunkStore(tmp_path / "store", max_disk_bytes=1 << 30)
    scans = _count_scans(monkeypatch)
    for n in range(1, 21):
        store.put(key(n), segment(n))
    assert scans == []
    assert store.disk_bytes() == 20 * os.path.getsize(store.path_for(key(1)))


def test_the_running_size_keeps_the_cap_and_rescans_rarely_at_the_cap(tmp_path, monkeypatch):
    probe = ChunkStore(tmp_path / "probe")
    probe.put(key(1), segment(1))
    size = probe.disk_bytes()
    store = ChunkStore(tmp_path / "store", max_disk_bytes=40 * size)
    scans = _count_scans(monkeypatch)
    sizes = []
    for n in range(1, 201):
        store.put(key(n), segment(n))
        sizes.append(sum(p.stat().st_size for p in (tmp_path / "store").glob("*/*.safetensors")))
    assert max(sizes) <= 40 * size
    assert len(scans) < 200 / 3  # an evicting scan frees room for several puts, not one
    assert store.path_for(key(200)).exists() and not store.path_for(key(1)).exists()


# -- a store shared by two users (needs root to switch between them) ------------------------------

GROUP, ALICE, BOB = 50000, 50001, 50002


def _as_user(uid: int, umask: int, root: str, action: str, n: int, results) -> None:
    """In a child process: become ``uid`` (in the store's group), then get or put entry ``n``."""
    os.setgroups([GROUP])
    os.setgid(GROUP)
    os.setuid(uid)
    os.umask(umask)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("prophetkv_jax").addHandler(handler)
    try:
        store = ChunkStore(root, max_device_bytes=0)  # host tier only: the forked child never touches JAX
        if action == "put":
            store.put(key(n), segment(n))
            results.put(("ok", store.root is not None, messages))
        else:
            got = store.get(key(n))
            same = got is not None and np.array_equal(got.k, segment(n).k)
            results.put(("ok", same, messages))
    except Exception as err:  # reported to the test, which names it
        results.put(("error", f"{type(err).__name__}: {err}", messages))


def _run_as(uid: int, umask: int, root: Path, action: str, n: int):
    # Forked, not spawned: the other user may not read this interpreter's files (under /root). The child
    # only touches NumPy and files, so JAX's threads in this process (when loaded) are not at risk.
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_as_user, args=(uid, umask, str(root), action, n, results))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        child.start()
    outcome = results.get(timeout=120)
    child.join(60)
    return outcome


@pytest.fixture
def group_store():
    if os.geteuid() != 0:
        pytest.skip("switching between two users needs root")
    parent = Path(tempfile.mkdtemp(prefix="shared-store-", dir="/tmp"))
    parent.chmod(0o755)
    root = parent / "store"
    root.mkdir()
    os.chown(root, 0, GROUP)
    root.chmod(0o2770)  # the documented set-up: a group folder, new files and folders inherit its group
    yield root
    shutil.rmtree(parent)


def test_a_shared_entry_another_user_cannot_refresh_is_served(group_store):
    assert _run_as(ALICE, 0o002, group_store, "put", 1)[:2] == ("ok", True)
    path = ChunkStore(group_store).path_for(key(1))
    path.chmod(0o640)  # Bob's group may read it, not touch its time
    assert _run_as(BOB, 0o002, group_store, "get", 1)[:2] == ("ok", True)


def test_a_shared_entry_another_user_cannot_read_is_a_warned_miss_and_left_alone(group_store):
    assert _run_as(ALICE, 0o002, group_store, "put", 2)[:2] == ("ok", True)
    path = ChunkStore(group_store).path_for(key(2))
    path.chmod(0o600)  # private to Alice (her umask was 077, say)
    before = path.read_bytes()
    status, served, messages = _run_as(BOB, 0o002, group_store, "get", 2)
    assert (status, served) == ("ok", False)
    assert len(messages) == 1 and str(path) in messages[0] and f"uid {ALICE}" in messages[0]
    assert "corrupt" not in messages[0]
    status, on_disk, _ = _run_as(BOB, 0o002, group_store, "put", 2)
    assert (status, on_disk) == ("ok", True)  # Bob keeps his disk tier for every other entry
    info = path.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode), path.read_bytes()) == (ALICE, 0o600, before)
    assert _run_as(ALICE, 0o002, group_store, "get", 2)[:2] == ("ok", True)
