"""grain training pipeline: determinism, checkpointable state, worker invariance, transforms."""

import logging

import numpy as np
import pytest
from data_helpers import make_promptir_root

from cea_jax.data import catalog, embedded, pipeline
from cea_jax.data.sources import TASK_IDS

CROP = 32


def embedded_source(seed=0):
    return catalog.train_source(catalog.parse_data("embedded"), "aio3", seed=seed, crop=CROP)


def first_batches(seed=0, count=3, workers=0, source_seed=0):
    ds = pipeline.train_dataset(embedded_source(source_seed), seed=seed, crop=CROP, batch_size=4, workers=workers)
    it = iter(ds)
    try:
        return [next(it) for _ in range(count)]
    finally:
        if hasattr(it, "close"):
            it.close()


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_batches_have_the_model_layout():
    batch = first_batches(count=1)[0]
    assert batch["degraded"].shape == batch["clean"].shape == (4, CROP, CROP, 3)
    assert batch["degraded"].dtype == np.uint8 and batch["task"].dtype == np.int32


def test_same_seed_same_stream_other_seed_other_stream():
    assert_same(first_batches(seed=3), first_batches(seed=3))
    other = first_batches(seed=4)
    assert not np.array_equal(other[0]["clean"], first_batches(seed=3)[0]["clean"])


def test_iterator_state_resumes_exactly():
    ds = pipeline.train_dataset(embedded_source(), seed=0, crop=CROP, batch_size=4)
    it = iter(ds)
    next(it), next(it)
    state = it.get_state()
    expected = [next(it), next(it)]
    resumed = iter(ds)
    resumed.set_state(state)
    assert_same([next(resumed), next(resumed)], expected)


def test_worker_processes_do_not_change_the_stream():
    assert_same(first_batches(workers=2, count=2), first_batches(workers=0, count=2))


def test_dihedral_ops_are_the_eight_symmetries():
    square = np.arange(16).reshape(4, 4)
    outs = [pipeline.dihedral(square, op) for op in range(8)]
    np.testing.assert_array_equal(outs[0], square)
    assert len({o.tobytes() for o in outs}) == 8


def test_train_transform_never_applies_the_identity():
    image = np.arange(CROP * CROP * 3, dtype=np.uint8).reshape(CROP, CROP, 3)
    element = {"degraded": image, "clean": image, "sigma": np.float32(0), "task": np.int32(1)}
    transform = pipeline.TrainTransform(CROP)
    for seed in range(30):
        out = transform.random_map(element, np.random.default_rng(seed))
        assert not np.array_equal(out["clean"], image)
        np.testing.assert_array_equal(out["degraded"], out["clean"])  # same op on both


def test_denoising_noise_is_added_online_after_the_crop():
    clean = np.full((48, 48, 3), 128, np.uint8)
    element = {"degraded": clean, "clean": clean, "sigma": np.float32(50), "task": np.int32(TASK_IDS["denoise"])}
    out = pipeline.TrainTransform(CROP).random_map(element, np.random.default_rng(0))
    assert out["degraded"].shape == (CROP, CROP, 3)
    assert (out["degraded"].astype(float) - 128).std() == pytest.approx(50, rel=0.1)


def test_embedded_train_and_test_photos_are_disjoint():
    assert not set(embedded.TRAIN_PHOTOS) & set(embedded.TEST_PHOTOS)
    assert len(embedded.train_photos()) == len(embedded.TRAIN_PHOTOS)
    assert all(min(p.shape[:2]) == embedded.TRAIN_SHORT_SIDE for p, _ in embedded.train_photos())
    assert all(tile.shape == (embedded.TEST_TILE, embedded.TEST_TILE, 3) for tile in embedded.test_tiles())
    assert len(embedded.test_tiles()) >= 8


def test_embedded_test_sets_are_fixed_and_cover_every_task():
    spec = catalog.parse_data("embedded")
    for task, count in (("aio3", 5), ("aio5", 5), ("cdd11", 11), ("mixed", 1)):
        sets = catalog.test_sets(spec, task)
        assert len(sets) == count
        a, b = sets[-1].source[0], sets[-1].source[0]
        np.testing.assert_array_equal(a["degraded"], b["degraded"])
        assert not np.array_equal(a["degraded"], a["clean"])


def test_skip_bad_reports_each_bad_file_once_however_often_it_is_revisited(tmp_path, caplog):
    root = make_promptir_root(tmp_path)
    (root / "Train/Derain/gt/norain-0.png").write_bytes(b"not a png")
    source = catalog.train_source(catalog.parse_data(str(root)), "aio3", seed=0, crop=CROP, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="cea_jax.data.sources"):
        for _ in range(5):  # five epochs
            for index in range(len(source)):
                source[index]
    warnings = [r.getMessage() for r in caplog.records if "skipping bad sample" in r.getMessage()]
    assert len(warnings) == 1 and "norain-0.png" in warnings[0]
