"""Helpers shared by the CEA data/train/evaluation tests (a plain module, not a conftest).

Tiny on-disk datasets in the real layouts, the smallest model spec, and one short
training run shared by every test module of the process (cached), so the model is
compiled and trained once per test session.
"""

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from cea_jax.train_lib import TrainConfig, train
from cea_jax.workdir import ModelSpec

# The smallest CEA that still has every part (4 levels, decoder adapters, rank 2).
SMALL_SPEC = ModelSpec("tiny", "cea", (("dim", 8), ("num_blocks", (1, 1, 1, 1)), ("num_refinement_blocks", 0),
                                       ("rank", 2)))
SMALL_TRAIN = TrainConfig(steps=8, batch_size=2, crop=32, workers=0, log_every=1, val_every=1000,
                          val_images=1, val_crop=32, checkpoint_every=1000)


def save(path: Path, shape=(40, 48), seed=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode=None).save(path)
    return path


def make_promptir_root(tmp_path):
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


def make_cdd11_root(tmp_path):
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


@functools.lru_cache(maxsize=None)
def trained_run() -> tuple[Path, dict]:
    """(workdir, final metrics row) of an uninterrupted SMALL_TRAIN run on the embedded data."""
    root = Path(tempfile.mkdtemp(prefix="cea_run_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    workdir = root / "run"
    return workdir, train(workdir, SMALL_SPEC, SMALL_TRAIN, progress=False)


def copy_run(tmp_path) -> Path:
    """A copy of the shared run's folder at ``tmp_path``/run, to resume, damage or lock."""
    workdir = tmp_path / "run"
    shutil.copytree(trained_run()[0], workdir)
    return workdir


def train_command(workdir, config=SMALL_TRAIN) -> list[str]:
    """train.py flags that train SMALL_SPEC with ``config`` in ``workdir`` (the shared run's command)."""
    flags = ["--workdir", str(workdir), "--no-progress"]
    for field, value in vars(config).items():
        if value is True:
            flags.append("--" + field.replace("_", "-"))
        elif value is not None and value is not False:
            flags += ["--" + field.replace("_", "-"), str(value)]
    return flags + [f"--set={k}={json.dumps(v)}" for k, v in SMALL_SPEC.overrides]


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes (to show nothing was written)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
