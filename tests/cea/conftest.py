"""Shared fixtures for the CEA tests: tiny on-disk datasets in the real layouts."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def save(path: Path, shape=(40, 48), seed=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode=None).save(path)
    return path


@pytest.fixture
def promptir_root(tmp_path):
    """A PromptIR/AdaIR tree with 2 images per folder (grayscale denoising images, like BSD400)."""
    root = tmp_path / "promptir"
    for i in range(2):
        save(root / f"Train/Denoise/{i:03d}.png", seed=i, mode="L")
        save(root / f"Train/Derain/rainy/rain-{i}.png", seed=10 + i)
        save(root / f"Train/Derain/gt/norain-{i}.png", seed=20 + i)
        save(root / f"Train/Dehaze/synthetic/part{i + 1}/{i:04d}_0.8_0.2.jpg", seed=30 + i)
        save(root / f"Train/Dehaze/original/{i:04d}.jpg", seed=40 + i)
        for task, deg, clean in (("Deblur", "blur", "sharp"), ("Enhance", "low", "gt")):
            save(root / f"Train/{task}/{deg}/{i}.png", seed=50 + i)
            save(root / f"Train/{task}/{clean}/{i}.png", seed=60 + i)
        save(root / f"test/denoise/bsd68/{i}.png", seed=70 + i)
        save(root / f"test/derain/Rain100L/input/rain-{i}.png", seed=71 + i)
        save(root / f"test/derain/Rain100L/target/norain-{i}.png", seed=72 + i)
        save(root / f"test/dehaze/input/{i:04d}_0.9_0.1.jpg", seed=73 + i)
        save(root / f"test/dehaze/target/{i:04d}.png", seed=74 + i)
        for task, sub in (("deblur", "gopro"), ("enhance", "lol")):
            save(root / f"test/{task}/{sub}/input/{i}.png", seed=75 + i)
            save(root / f"test/{task}/{sub}/target/{i}.png", seed=76 + i)
    return root


@pytest.fixture
def cdd11_root(tmp_path):
    """cdd11/{train,test}: every category has 1 image except 'low' (5), to test uniform sampling."""
    from cea_jax.data.degrade import CDD11_CATEGORIES

    root = tmp_path / "cdd"
    for split in ("train", "test"):
        for i in range(5):
            save(root / f"cdd11/{split}/clear/{i}.png", seed=i)
        for c in CDD11_CATEGORIES:
            for i in range(5 if c == "low" else 1):
                save(root / f"cdd11/{split}/{c}/{i}.png", seed=100 + i)
    return root
