"""The cea_mixed experiment's statistics: two-way paired bootstrap, paired differences and the verdict."""

import numpy as np
import pytest

from experiments.cea_mixed import report
from experiments.cea_tables import paired_bootstrap


def test_bootstrap_interval_is_exact_for_a_constant_and_widens_with_spread():
    assert paired_bootstrap(np.full((3, 10), 0.7), 500) == pytest.approx((0.7, 0.7, 0.7))
    rng = np.random.default_rng(0)
    narrow = paired_bootstrap(1.0 + 0.1 * rng.standard_normal((3, 96)), 2000)
    wide = paired_bootstrap(1.0 + 1.0 * rng.standard_normal((3, 96)), 2000)
    assert narrow[1] < narrow[0] < narrow[2] and (wide[2] - wide[1]) > 5 * (narrow[2] - narrow[1])
    # A seed that disagrees with the others widens the interval: seeds are resampled too.
    seed_effect = np.concatenate([np.zeros((2, 96)), np.full((1, 96), 3.0)])
    low, high = paired_bootstrap(seed_effect, 2000)[1:]
    assert low == pytest.approx(0.0) and high == pytest.approx(3.0)


def _record(variant, seed, psnr, delta):
    tiles = [{"model": {"psnr": psnr + 0.01 * t}, "delta": delta} for t in range(4)]
    return {"variant": variant, "seed": seed, "mixed": {"per_image": {"Mixed": tiles}},
            "aio3": {"per_image": {"Derain": [{"model": {"psnr": psnr}}]}}}


def test_paired_differences_and_verdict():
    records = [_record("cea", s, 20.0, -0.1) for s in range(2)]
    records += [_record(b, s, 19.3, -0.6) for s in range(2) for b in ("descriptor", "experts", "prompt")]
    diffs = report.paired_differences(records, 200)
    assert diffs["prompt"]["mixed_psnr"]["mean"] == pytest.approx(0.7)
    assert diffs["experts"]["delta"]["low"] == pytest.approx(0.5)
    assert report.verdict(diffs)["met"]
    worse = [dict(r, mixed={"per_image": {"Mixed": [{"model": {"psnr": 19.0}, "delta": -0.1}] * 4}})
             if r["variant"] == "cea" else r for r in records]
    decision = report.verdict(report.paired_differences(worse, 200))
    assert decision["complete"] and not decision["met"]
    no_prompt = [r for r in records if r["variant"] != "prompt"]
    assert not report.verdict(report.paired_differences(no_prompt, 200))["complete"]
