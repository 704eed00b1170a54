"""Training settings: one frozen dataclass whose fields train.py turns into its flags.

Kept apart from :mod:`cea_jax.train_lib` (and without JAX) so ``python train.py --help``
and a bad flag answer before JAX loads.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from cea_jax.data import catalog

TRAINABLE = ("all", "adapter")  # what --train may update: every parameter, or only the conditioning module


def setting(default: Any, help: str) -> Any:
    """A TrainConfig field whose ``help`` train.py turns into its command-line flag's help."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (the paper recipe's optimiser, scaled to ``steps``)."""

    data: str = setting("embedded", "'embedded' (default, no download), 'tfds:NAME[:SPLIT]', or a dataset folder "
                                    "(PromptIR/AdaIR, MoCE-IR or CDD-11 layout; see data/README.md)")
    protocol: str = setting("aio3", f"training mixture, one of {catalog.PROTOCOLS}")
    steps: int = setting(300, "optimiser steps in the whole run")
    batch_size: int = setting(8, "global batch size, across devices and hosts")
    crop: int = setting(48, "training crop size (multiple of 8)")
    lr: float = setting(2e-4, "peak learning rate")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    fft_weight: float = setting(0.0, "weight of the FFT-L1 term (0: off)")
    seed: int = setting(0, "seed of init, shuffling, crops and noise")
    workers: int = setting(0, "grain worker processes (0: in-process; N > 0 spawns N processes, worth it "
                                "when an accelerator waits for data, see cea_jax/data/pipeline.py)")
    checkpoint_every: int = setting(100, "steps between checkpoints")
    keep_checkpoints: int = setting(2, "newest checkpoints kept on disk")
    log_every: int = setting(10, "steps between metrics.jsonl rows")
    val_every: int = setting(100, "steps between validation PSNR measurements")
    val_images: int = setting(4, "held-out images per test column")
    val_crop: int = setting(128, "centre crop of the validation images")
    skip_bad: bool = setting(False, "log (once per file) and skip unreadable/mismatched images")
    mix_prob: float = setting(0.0, "fraction of crops mixing 2-3 of the protocol's degradations in Voronoi regions")
    mix_feather: float = setting(0.0, "cross-fade (pixels) between mixed regions; 0 = hard borders")
    recolour: bool = setting(False, "give every synthesised clean crop a random channel order and channel gains "
                                    "(the embedded photos are mostly greyscale; see cea_jax/data/windows.py)")
    tfds_data_dir: str | None = setting(None, "TFDS data_dir for --data tfds:NAME")
    init_from: str | None = setting(None, "start from the weights of this train.py --workdir's newest checkpoint "
                                          "(its digest is saved; a resumed run refuses a changed source)")
    train: str = setting("all", f"parameters that get updates, one of {TRAINABLE}: "
                                "'adapter' freezes the backbone and trains only the variant's module")

    def __post_init__(self) -> None:
        # First: NaN passes every range check below (each comparison is False), trains into NaN
        # weights, and then never equals itself when a resume compares settings.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value}")
        for name in ("steps", "batch_size", "crop", "checkpoint_every", "log_every", "val_every", "val_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.crop % 8:
            raise ValueError(f"crop must be a multiple of 8 (the U-Net downsamples 3x), got {self.crop}")
        if self.protocol not in catalog.PROTOCOLS:
            raise ValueError(f"protocol must be one of {catalog.PROTOCOLS}, got {self.protocol!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.fft_weight < 0 or self.workers < 0:
            raise ValueError("lr must be > 0 and weight_decay, fft_weight, workers >= 0")
        if self.keep_checkpoints < 1 or self.val_crop < 16:
            raise ValueError("keep_checkpoints must be >= 1 and val_crop >= 16")
        if self.train not in TRAINABLE:
            raise ValueError(f"train must be one of {TRAINABLE}, got {self.train!r}")
        if self.train == "adapter" and not self.init_from:
            raise ValueError("train 'adapter' freezes the backbone, so it needs init_from (a trained --workdir)")
        if self.recolour and not (self.data == "embedded" or self.data.startswith("tfds:")):
            raise ValueError(catalog.recolour_refusal(self.data))
        if not 0 <= self.mix_prob <= 1 or self.mix_feather < 0:
            raise ValueError(f"mix_prob must be in [0, 1] and mix_feather >= 0, "
                             f"got {self.mix_prob}, {self.mix_feather}")
