"""The mixing penalty: zero for any per-pixel restorer, non-zero for a global one."""

import numpy as np
import pytest

from cea_jax import metrics, mixing
from cea_jax.data import catalog


@pytest.fixture(scope="module")
def records():
    (test_set,) = catalog.test_sets(catalog.parse_data("embedded"), "mixed")
    return [test_set.source[i] for i in (0, 13)]


def _pointwise(images):  # restores every pixel from that pixel alone
    return np.sqrt(images.astype(np.float64) / 255.0)


def _global(images):  # one correction per image, from the image's mean: global conditioning
    x = images.astype(np.float64) / 255.0
    return np.clip(x - x.mean(axis=(1, 2, 3), keepdims=True) + 0.5, 0, 1)


def test_per_pixel_restoration_pays_no_mixing_penalty(records):
    for rec in records:
        score = mixing.score_mixed(_pointwise, rec)
        assert score["delta"] == pytest.approx(0.0, abs=1e-9)
        clean = rec["clean"] / 255.0
        assert score["model"]["psnr"] == pytest.approx(float(metrics.psnr(clean, _pointwise(rec["degraded"][None])[0])))
        masks = [rec["labels"] == k for k in range(len(score["kinds"]))]
        want = [metrics.region_psnr(clean, rec["degraded"] / 255.0, m) for m in masks]
        assert [r["psnr"] for r in score["input"]["regions"]] == pytest.approx(want)


def test_global_conditioning_pays_a_mixing_penalty(records):
    deltas = [mixing.score_mixed(_global, rec)["delta"] for rec in records]
    assert all(abs(d) > 0.05 for d in deltas)
    summary = mixing.summarize([mixing.score_mixed(_global, rec) for rec in records])
    assert summary["count"] == 2 and summary["delta"] == pytest.approx(np.mean(deltas))
    assert set(summary["model"]["regions"]) <= set(catalog.MIXED_KINDS["aio3"])
