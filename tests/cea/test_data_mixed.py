"""Spatially mixed data: training crops on every protocol and the region-labelled mixed test set."""

import numpy as np
import pytest
from data_helpers import make_cdd11_root, make_promptir_root

from cea_jax.data import catalog, degrade, embedded, pipeline
from cea_jax.data.sources import TASK_IDS, TASKS, MixedTrainSource, record

CROP = 32


def _source(spec, protocol, mix_prob, feather=0.0):
    return catalog.train_source(spec, protocol, seed=0, crop=CROP, mix_prob=mix_prob, mix_feather=feather)


def test_hard_composite_takes_each_region_from_its_version():
    labels = degrade.voronoi_regions((60, 90), 3, np.random.default_rng(0))
    versions = [np.full((60, 90, 3), 50 * (k + 1), np.uint8) for k in range(3)]
    mixed = degrade.compose_regions(versions, labels)
    np.testing.assert_array_equal(mixed[..., 0], 50 * (labels + 1))
    soft = degrade.compose_regions(versions, labels, feather=2.0)
    weights = degrade.region_weights(labels, 3, feather=2.0)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-6)
    assert 0 < (soft != mixed).mean() < 0.5  # only pixels near borders are blended
    inner = (labels == 0) & (weights[0] > 0.999)
    np.testing.assert_array_equal(soft[inner], mixed[inner])


def test_mix_prob_zero_is_the_plain_source_and_one_mixes_every_crop():
    spec = catalog.parse_data("embedded")
    plain = catalog.train_source(spec, "aio3", seed=0, crop=CROP)
    assert _source(spec, "aio3", 0.0).__class__ is plain.__class__
    mixed = _source(spec, "aio3", 1.0)
    for index in range(4):
        rec = mixed[index]
        assert TASKS[int(rec["task"])] == "mixed" and rec["sigma"] == 0
        assert rec["degraded"].shape == rec["clean"].shape and min(rec["clean"].shape[:2]) >= CROP
        np.testing.assert_array_equal(rec["degraded"], mixed[index]["degraded"])  # deterministic per index
        np.testing.assert_array_equal(rec["clean"], plain[index]["clean"])  # same scene, now mixed
    half = _source(spec, "aio3", 0.5)
    share = np.mean([TASKS[int(half[i]["task"])] == "mixed" for i in range(60)])
    assert 0.3 < share < 0.7


@pytest.mark.parametrize("protocol", ["aio3", "cdd11"])
def test_mixed_crops_on_dataset_folders(tmp_path, protocol):
    root = make_promptir_root(tmp_path) if protocol == "aio3" else make_cdd11_root(tmp_path)
    source = _source(catalog.parse_data(str(root)), protocol, 1.0)
    rec = source[0]
    assert TASKS[int(rec["task"])] == "mixed"
    assert rec["degraded"].shape == rec["clean"].shape == (40, 48, 3)  # the image is smaller than the window
    assert not np.array_equal(rec["degraded"], rec["clean"])


def _expected_secondary_share(tasks, base, max_regions=3):
    """P((task, level) is a secondary region | base): 1 to max_regions-1 picks (uniform count) among the
    entries whose task differs from the base's, drawn uniformly without replacement."""
    others = [entry for entry in tasks if entry[0] != base[0]]
    most = min(max_regions - 1, len(others))  # the number of picks is uniform in 1..most
    return {entry: (1 + most) / 2 / len(others) if entry in others else 0.0 for entry in tasks}


@pytest.mark.parametrize("protocol", ["aio3", "aio5"])
def test_every_task_and_level_is_a_secondary_region_in_its_expected_share(protocol):
    tasks = catalog.protocol_tasks(protocol)
    clean = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    base = [record(clean, clean, t, s) for _ in range(60) for t, s in tasks]
    source = MixedTrainSource(base, tasks, seed=0, mix_prob=1.0, window=32)
    seen = dict.fromkeys(tasks, 0)
    expected = dict.fromkeys(tasks, 0.0)
    variance = dict.fromkeys(tasks, 0.0)
    for index in range(len(source)):
        rec = source[index]
        regions = list(zip(rec["region_tasks"].tolist(), rec["region_sigmas"].tolist()))
        assert regions[0] == tasks[index % len(tasks)]  # region 0 is the base sample's own degradation
        assert sorted(np.unique(rec["labels"])) == list(range(len(regions))) and 2 <= len(regions) <= 3
        for entry in regions[1:]:
            seen[entry] += 1
        for entry, p in _expected_secondary_share(tasks, regions[0]).items():
            expected[entry] += p
            variance[entry] += p * (1 - p)
    for entry in tasks:  # each index picks an entry at most once: a sum of independent Bernoulli draws
        assert expected[entry] > 20
        assert abs(seen[entry] - expected[entry]) < 4 * variance[entry] ** 0.5, (entry, seen, expected)


def test_mixed_training_stream_resumes_exactly():
    ds = pipeline.train_dataset(_source(catalog.parse_data("embedded"), "aio3", 1.0, feather=2.0),
                                seed=0, crop=CROP, batch_size=4)
    it = iter(ds)
    next(it)
    state = it.get_state()
    expected = next(it)
    resumed = iter(ds)
    resumed.set_state(state)
    got = next(resumed)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert (got["task"] == TASK_IDS["mixed"]).all()


def test_mixed_test_set_is_region_labelled_and_cut_from_its_full_versions():
    spec = catalog.parse_data("embedded")
    (test_set,) = catalog.test_sets(spec, "mixed", protocol="aio3")
    source = test_set.source
    tiles = embedded.test_tiles(embedded.MIXED_TILE)
    assert len(source) == len(tiles) * catalog.MIXED_LAYOUTS >= 192
    assert len(embedded.TEST_PHOTOS) >= 4
    counts = set()
    for index in (0, len(tiles)):  # the same tile under layouts 0 and 1
        rec = source[index]
        kinds = list(rec["region_kinds"])
        counts.add(len(kinds))
        assert set(kinds) <= set(catalog.MIXED_KINDS["aio3"]) and len(set(kinds)) == len(kinds)
        assert rec["full"].shape == (len(kinds), *rec["clean"].shape)
        assert sorted(np.unique(rec["labels"])) == list(range(len(kinds)))
        composite = np.take_along_axis(rec["full"], rec["labels"][None, :, :, None], axis=0)[0]
        np.testing.assert_array_equal(composite, rec["degraded"])
        np.testing.assert_array_equal(rec["clean"], tiles[0])
    assert counts == {2, 3}
    (cdd,) = catalog.test_sets(spec, "mixed", protocol="cdd11")
    assert set(cdd.source[0]["region_kinds"]) <= set(degrade.CDD11_CATEGORIES)


def test_train_cli_rejects_a_bad_mix_prob_in_one_line(tmp_path, capsys):
    import train as train_cli

    assert train_cli.main(["--workdir", str(tmp_path / "run"), "--mix-prob", "1.5", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "train.py: error: mix_prob must be in [0, 1] and mix_feather >= 0, got 1.5, 0.0"
    assert not (tmp_path / "run").exists()
