"""The classical anchors: each restores its own degradation, DCP finds a known transmission, and
``evaluate.py --anchors`` writes their rows (alone without loading JAX, or beside a model)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_promptir_root
from skimage.metrics import peak_signal_noise_ratio

from cea_jax import anchors, evaluation
from cea_jax.data import degrade, embedded

ROOT = Path(__file__).resolve().parents[2]


def _psnr(clean: np.ndarray, image: np.ndarray) -> float:
    return peak_signal_noise_ratio(clean, np.asarray(image, np.float64), data_range=1.0)


@pytest.fixture(scope="module")
def clean_uint8():
    """A 64 px crop of a held-out photo: real texture, small enough for BM3D in a second."""
    return embedded.test_tiles()[5][:64, :64]


@pytest.mark.parametrize("restore", [
    lambda image: anchors.bm3d_denoise(image, 25.0),
    anchors.nl_means_denoise,
    lambda image: anchors.tv_denoise(image, 0.1),
], ids=["bm3d", "nl-means", "tv"])
def test_each_denoiser_beats_its_noisy_input_at_sigma_25(clean_uint8, restore):
    noisy = degrade.add_uint8_noise(clean_uint8, 25.0, np.random.default_rng(0)).astype(np.float64) / 255.0
    clean = clean_uint8.astype(np.float64) / 255.0
    restored = restore(noisy)
    assert restored.shape == noisy.shape and 0.0 <= restored.min() and restored.max() <= 1.0
    assert _psnr(clean, restored) > _psnr(clean, noisy) + 3.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_and_dark_channel_beat_the_repos_rain_and_haze(clean_uint8, seed):
    rng = np.random.default_rng(seed)
    clean = clean_uint8.astype(np.float64) / 255.0
    rainy = degrade.add_rain(clean_uint8, rng).astype(np.float64)
    hazy = degrade.add_haze(clean_uint8, degrade.synthetic_depth(clean.shape[:2], rng), rng).astype(np.float64)
    assert _psnr(clean, anchors.median_derain(rainy)) > _psnr(clean, rainy) + 2.0
    assert _psnr(clean, anchors.dark_channel_dehaze(hazy)) > _psnr(clean, hazy) + 2.0


def test_dark_channel_prior_recovers_a_known_transmission_and_airlight():
    # A haze-free scene that obeys the prior: 8 px blocks of colours, each with one channel at 0.
    rng = np.random.default_rng(0)
    blocks = rng.uniform(0.2, 1.0, (12, 12, 3))
    blocks[np.arange(12)[:, None], np.arange(12)[None, :], rng.integers(0, 3, (12, 12))] = 0.0
    scene = np.kron(blocks, np.ones((8, 8, 1)))
    truth = np.exp(-2.5 * np.linspace(1.0, 0.0, 96)[:, None] * np.ones((1, 96)))  # far at the top
    light = np.array([0.85, 0.9, 0.95])
    hazy = scene * truth[..., None] + light * (1.0 - truth[..., None])
    transmission, estimated_light = anchors.dark_channel_transmission(hazy)
    assert np.abs(estimated_light - light).max() < 0.1
    assert np.corrcoef(transmission.ravel(), truth.ravel())[0, 1] > 0.97
    assert np.abs(transmission - truth).mean() < 0.12
    assert _psnr(scene, anchors.dark_channel_dehaze(hazy)) > _psnr(scene, hazy) + 3.0


def test_tv_oracle_keeps_each_columns_best_weight_in_the_means_and_per_image():
    column = tuple(a for a in anchors.BY_DEGRADATION["noise"] if a.oracle)
    scores = [{"anchors": {a.name: {"psnr": 20.0 + (a.name == "TV w=0.15") + i, "ssim": 0.5} for a in column}}
              for i in range(2)]
    rows = evaluation._anchor_columns(column, scores)
    assert list(rows) == [anchors.TV_ORACLE] and rows[anchors.TV_ORACLE]["choice"] == "TV w=0.15"
    assert rows[anchors.TV_ORACLE]["psnr"] == pytest.approx(21.5) and rows[anchors.TV_ORACLE]["count"] == 2
    assert [s["anchors"] for s in scores] == [{anchors.TV_ORACLE: {"psnr": 21.0 + i, "ssim": 0.5}} for i in range(2)]


def test_anchors_alone_write_their_rows_without_loading_jax(tmp_path):
    root = make_promptir_root(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "evaluate.py"), "--task", "aio3",
                           "--anchors", "--data", str(root), "--out", str(out), "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "jax" not in imported and "flax" not in imported
    table = (out / "results.md").read_text()
    for row in ("| Input (degraded) |", "| BM3D (σ known) |", "| NL-means (σ estimated) |", "| TV (oracle weight) |"):
        assert row in table
    assert "| Median 5x5 | - | - | - |" in table and "| Dark-channel prior | - | - | - | - |" in table
    assert "oracle choice" in table and "Seconds per image" in table
    result = json.loads((out / "results.json").read_text())
    assert "variant" not in result and set(result["anchors"]["rows"]["BM3D (σ known)"]["columns"]) == {
        "Denoise σ=15", "Denoise σ=25", "Denoise σ=50"}
    assert result["anchors"]["rows"]["Median 5x5"]["columns"]["Derain"]["count"] == 2
    first = result["per_image"]["Denoise σ=25"][0]
    assert set(first["anchors"]) == {"BM3D (σ known)", "NL-means (σ estimated)", anchors.TV_ORACLE}


def test_anchors_refuse_the_mixed_set(capsys):
    assert evaluation.main(["--task", "mixed", "--anchors"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--anchors scores single-degradation columns" in err


def test_a_missing_bm3d_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    root = make_promptir_root(tmp_path)
    code = evaluation.main(["--task", "aio3", "--anchors", "--data", str(root), "--out", str(tmp_path / "o"),
                            "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'bm3d>=4,<5'" in err
