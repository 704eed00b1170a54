"""The README's CEA picture: a held-out photo with noise, the shipped model's output, BM3D's and the clean photo.

    python -m experiments.cea_default_model.figure   # writes docs/images/cea_default_model.png

Astronaut is held out of training. Gaussian noise sigma 25 (seed 0) on the photo at the test scale
(short side 256 px); BM3D is told sigma, the network is not. PSNR in each title.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cea_jax import anchors, metrics
from cea_jax.data import degrade, embedded
from cea_jax.inference import restore_batch
from cea_jax.pretrained.loader import load_pretrained
from cea_jax.pretrained.manifest import DEFAULT_NAME
from cea_jax.viz import save_panels

ROOT = Path(__file__).resolve().parents[2]
FIGURE = ROOT / "docs" / "images" / "cea_default_model.png"
PHOTO, SIGMA, SEED = "astronaut", 25.0, 0


def panels(name: str = DEFAULT_NAME, folder: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """(title with PSNR, image) for noisy input, the shipped model, BM3D (sigma known) and the clean photo."""
    clean = embedded.test_photo(PHOTO)  # refuses a photo the model trained on
    noisy = degrade.add_uint8_noise(clean, SIGMA, np.random.default_rng(SEED))
    config, params, _ = load_pretrained(name, folder)
    restored = restore_batch(config, params, noisy[None])[0][0]
    noisy = noisy.astype(np.float64) / 255.0
    outputs = [(f"noisy (σ={SIGMA:g})", noisy), (f"CEA '{name}'", restored),
               ("BM3D (σ known)", anchors.bm3d_denoise(noisy, SIGMA))]
    reference = clean.astype(np.float64) / 255.0
    titled = [(f"{title}: {float(metrics.psnr(reference, np.asarray(image, np.float64))):.2f} dB", image)
              for title, image in outputs]
    return [*titled, ("clean", clean)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=FIGURE)
    parser.add_argument("--name", default=DEFAULT_NAME, help="shipped model to show")
    args = parser.parse_args(argv)
    save_panels(args.out, panels(args.name))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
