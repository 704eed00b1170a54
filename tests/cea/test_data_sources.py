"""Real-layout discovery (multipliers, name pairing), CDD-11 sampling and bad-input errors."""

import collections
import logging

import numpy as np
import pytest
from data_helpers import make_cdd11_root, make_promptir_root, save

from cea_jax.data import catalog, layouts
from cea_jax.data.io import BadImageError, DataLayoutError, read_rgb
from cea_jax.data.sources import TASKS, CDD11TrainSource, PairSource


@pytest.fixture
def promptir_root(tmp_path):
    return make_promptir_root(tmp_path)


@pytest.fixture
def cdd11_root(tmp_path):
    return make_cdd11_root(tmp_path)


def test_promptir_aio3_multipliers_and_pairing(promptir_root):
    pairs = layouts.aio_train_pairs(promptir_root, "aio3")
    counts = collections.Counter((p.task, p.sigma) for p in pairs)
    # 2 clean images x 3 repeats per sigma; 2 rain pairs x 120; 2 haze pairs x 1.
    assert counts == {("denoise", 15.0): 6, ("denoise", 25.0): 6, ("denoise", 50.0): 6,
                      ("derain", 0.0): 240, ("dehaze", 0.0): 2}
    rain = next(p for p in pairs if p.task == "derain" and p.degraded.name == "rain-1.png")
    assert rain.clean.name == "norain-1.png"
    haze = next(p for p in pairs if p.task == "dehaze" and p.degraded.name.startswith("0001"))
    assert haze.clean.name == "0001.jpg"


def test_aio5_adds_deblur_and_enhance(promptir_root):
    counts = collections.Counter(p.task for p in layouts.aio_train_pairs(promptir_root, "aio5"))
    assert counts["deblur"] == 2 * 5 and counts["enhance"] == 2 * 20


def test_moceir_layout_is_detected(tmp_path):
    root = tmp_path / "moce"
    for i in range(2):
        save(root / f"denoising/WaterlooED/{i}.bmp", seed=i)
        save(root / f"denoising/BSD400/{i}.jpg", seed=i)
        save(root / f"deraining/RainTrainL/rainy/rain-{i}.png", seed=i)
        save(root / f"deraining/RainTrainL/gt/norain-{i}.png", seed=i)
        save(root / f"dehazing/RESIDE/part1/{i}_0.8_0.1.jpg", seed=i)
        save(root / f"dehazing/RESIDE/clear/{i}.jpg", seed=i)
    assert layouts.detect_aio_layout(root) == "moceir"
    counts = collections.Counter(p.task for p in layouts.aio_train_pairs(root, "aio3"))
    assert counts == {"denoise": 4 * 9, "derain": 240, "dehaze": 2}
    with pytest.raises(DataLayoutError, match="deblurring/GoPro/crop/train/input_crops: folder not found"):
        layouts.aio_train_pairs(root, "aio5")


def test_test_sets_crop_to_16_and_seed_the_noise(promptir_root):
    spec = catalog.parse_data(str(promptir_root))
    sets = catalog.test_sets(spec, "aio3")
    assert [s.label for s in sets] == ["Denoise σ=15", "Denoise σ=25", "Denoise σ=50", "Derain", "Dehaze"]
    rec = sets[1].source[0]
    assert rec["degraded"].shape == rec["clean"].shape == (32, 48, 3)
    assert rec["sigma"] == 0  # noise already added, with a fixed seed
    np.testing.assert_array_equal(rec["degraded"], sets[1].source[0]["degraded"])
    assert np.abs(rec["degraded"].astype(float) - rec["clean"]).std() > 10


def test_cdd11_samples_categories_uniformly(cdd11_root):
    by_cat = layouts.cdd11_pairs(cdd11_root, "train")
    assert len(by_cat) == 11 and len(by_cat["low"]) == 5
    source = CDD11TrainSource(by_cat, seed=0)
    drawn = collections.Counter(TASKS[int(source._load(i)["task"])] for i in range(1100))
    # 'low' has 5x the images of any other category but is drawn no more often.
    assert len(drawn) == 11
    assert max(drawn.values()) < 140 and min(drawn.values()) > 60
    sets = catalog.test_sets(catalog.parse_data(str(cdd11_root)), "cdd11")
    assert [s.label for s in sets] == list(layouts.CDD11_CATEGORIES)


def test_corrupt_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(BadImageError, match="broken.png: cannot read image"):
        read_rgb(bad)


def test_channel_layouts_are_checked(tmp_path):
    gray = save(tmp_path / "gray.png", mode="L")
    rgba = save(tmp_path / "rgba.png", mode="RGBA")
    with pytest.raises(BadImageError, match="gray.png: grayscale"):
        read_rgb(gray)
    assert read_rgb(gray, allow_gray=True).shape == (40, 48, 3)
    with pytest.raises(BadImageError, match="rgba.png: image has an alpha channel"):
        read_rgb(rgba)


def test_pair_size_mismatch_and_missing_partner(promptir_root):
    save(promptir_root / "Train/Derain/gt/norain-1.png", shape=(30, 30))
    pairs = [p for p in layouts.aio_train_pairs(promptir_root, "aio3") if p.task == "derain"][:2]
    with pytest.raises(BadImageError, match="rain-1.png: size 48x40 does not match its clean partner"):
        PairSource(pairs)[1]
    save(promptir_root / "Train/Derain/rainy/rain-7.png")
    with pytest.raises(DataLayoutError, match="rain-7.png: no clean partner"):
        layouts.aio_train_pairs(promptir_root, "aio3")


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(DataLayoutError, match="folder not found"):
        catalog.parse_data(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="not an all-in-one dataset root"):
        layouts.aio_train_pairs(tmp_path / "empty", "aio3")


def test_skip_bad_logs_and_uses_the_next_sample(promptir_root, caplog):
    (promptir_root / "Train/Deblur/blur/0.png").write_bytes(b"garbage")
    pairs = [p for p in layouts.aio_train_pairs(promptir_root, "aio5") if p.task == "deblur"][:2]
    with pytest.raises(BadImageError, match="0.png: cannot read image"):
        PairSource(pairs)[0]
    with caplog.at_level(logging.WARNING):
        rec = PairSource(pairs, skip_bad=True)[0]
    assert "skipping bad sample" in caplog.text and "0.png" in caplog.text
    np.testing.assert_array_equal(rec["degraded"], read_rgb(pairs[1].degraded))
    caplog.clear()
    source = PairSource(pairs, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):  # an epoch loop meets the bad file again and again
            source[0]
    assert caplog.text.count("skipping bad sample") == 1


def test_crop_larger_than_images_is_a_named_error(promptir_root):
    pairs = [p for p in layouts.aio_train_pairs(promptir_root, "aio3") if p.task == "derain"]
    with pytest.raises(BadImageError, match="is smaller than the 64x64 crop"):
        PairSource(pairs, min_size=64)[0]
