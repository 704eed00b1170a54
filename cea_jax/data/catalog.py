"""What ``--data`` and ``--protocol`` / ``--task`` mean: the sources for training, validation and test.

``--data`` is ``embedded`` (scikit-image photos, synthesised online), ``tfds:NAME[:SPLIT]``
(clean images from a prepared TFDS dataset, synthesised online) or a folder holding a
real dataset in the PromptIR/AdaIR, MoCE-IR or CDD-11 layout.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from cea_jax.data import embedded, layouts
from cea_jax.data.degrade import CDD11_CATEGORIES
from cea_jax.data.io import DataLayoutError, read_rgb
from cea_jax.data.sources import (
    ArrayImages,
    CDD11TrainSource,
    CleanImages,
    MixedTestSource,
    MixedTrainSource,
    PairSource,
    SyntheticSource,
    SyntheticTestSource,
    centre_crop,
)

log = logging.getLogger(__name__)

PROTOCOLS = ("aio3", "aio5", "cdd11")
EVAL_TASKS = PROTOCOLS + ("mixed",)
# The recipes the mixed test set draws its regions from, per training protocol.
MIXED_KINDS = {"aio3": ("noise", "rain", "haze"), "aio5": ("noise", "rain", "haze", "blur", "low"),
               "cdd11": CDD11_CATEGORIES}
MIXED_LAYOUTS = 3  # Voronoi layouts per embedded mixed tile: 88 tiles x 3 = 264 mixed samples
_COLUMN = {"denoise": "Denoise", "derain": "Derain", "dehaze": "Dehaze", "deblur": "Deblur", "enhance": "Low-light"}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value."""

    kind: str  # "embedded" | "tfds" | "folder"
    path: Path | None = None
    tfds_name: str = ""
    tfds_split: str = "train"
    tfds_data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class TestSet:
    """One column of a results table: its label and the source of its (degraded, clean) records."""

    label: str
    source: Sequence


def parse_data(value: str, tfds_data_dir: str | None = None) -> DataSpec:
    """``embedded`` | ``tfds:NAME[:SPLIT]`` | a dataset folder (must exist)."""
    if value == "embedded":
        return DataSpec("embedded")
    if value.startswith("tfds:"):
        parts = value.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise ValueError(f"--data {value!r}: expected tfds:NAME or tfds:NAME:SPLIT")
        return DataSpec("tfds", tfds_name=parts[1], tfds_split=parts[2] if len(parts) == 3 else "train",
                        tfds_data_dir=tfds_data_dir)
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataLayoutError(
            f"--data {value}: folder not found (expected 'embedded', 'tfds:NAME' or a dataset folder)")
    return DataSpec("folder", path=path)


def recolour_refusal(data: str) -> str:
    """Why ``--recolour`` is refused with ``--data`` naming a folder: its pairs come degraded already, and
    recolouring only their clean half would break them (one message for train.py's early check and here)."""
    return (f"--recolour gives clean images new colours before they are degraded; --data {data} holds pairs "
            "degraded already (use it with --data embedded or tfds:NAME)")


def protocol_tasks(protocol: str) -> tuple[tuple[str, float], ...]:
    """(task, sigma) pairs a synthetic training source cycles through (denoising once per sigma)."""
    if protocol == "cdd11":
        return tuple((c, 0.0) for c in CDD11_CATEGORIES)
    if protocol not in layouts.PROTOCOL_TASKS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    tasks: list[tuple[str, float]] = []
    for task in layouts.PROTOCOL_TASKS[protocol]:
        if task == "denoise":
            tasks += [("denoise", float(s)) for s in layouts.DENOISE_SIGMAS]
        else:
            tasks.append((task, 0.0))
    return tuple(tasks)


def _clean_images(spec: DataSpec) -> CleanImages:
    if spec.kind == "embedded":
        size = embedded.training_size()
        log.info("embedded training set: %d photos, %d pixels at short side %d (held out: %s)",
                 size.photos, size.pixels, embedded.TRAIN_SHORT_SIDE, ", ".join(embedded.TEST_PHOTOS))
        return ArrayImages(embedded.train_photos())
    from cea_jax.data.tfds_images import TfdsImages

    return TfdsImages(spec.tfds_name, spec.tfds_split, spec.tfds_data_dir)


def train_source(spec: DataSpec, protocol: str, *, seed: int, crop: int, skip_bad: bool = False,
                 mix_prob: float = 0.0, mix_feather: float = 0.0, recolour: bool = False) -> Sequence:
    """The training source for a protocol: synthetic for embedded/tfds data, files for a folder.

    ``mix_prob`` > 0 turns that fraction of the samples into spatially mixed crops of the
    protocol's tasks (``mix_feather`` pixels of cross-fade between regions). ``recolour`` gives
    each synthesised clean image new colours (``windows.recolour``); a folder's pairs come
    degraded already, so it is refused there.
    """
    if recolour and spec.kind == "folder":
        raise ValueError(recolour_refusal(str(spec.path)))
    window = crop + crop // 2  # degrade a window a little larger than the crop: cheap, and the crop still moves
    if spec.kind in ("embedded", "tfds"):
        scales = embedded.SCALE_RANGE if spec.kind == "embedded" else (1.0, 1.0)
        source: Sequence = SyntheticSource(_clean_images(spec), protocol_tasks(protocol), seed=seed,
                                           window=window, min_size=crop, scales=scales, recoloured=recolour)
    elif protocol == "cdd11":
        assert spec.path is not None
        source = CDD11TrainSource(layouts.cdd11_pairs(spec.path, "train"), seed=seed, skip_bad=skip_bad,
                                  min_size=crop)
    elif protocol in layouts.PROTOCOL_TASKS:
        assert spec.path is not None
        source = PairSource(layouts.aio_train_pairs(spec.path, protocol), skip_bad=skip_bad, min_size=crop)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if mix_prob > 0:
        source = MixedTrainSource(source, protocol_tasks(protocol), seed=seed, mix_prob=mix_prob, window=window,
                                  feather=mix_feather)
    return source


def _label(task: str, sigma: float, protocol: str) -> str:
    if task == "denoise" and protocol == "aio3":
        return f"Denoise σ={int(sigma)}"
    return _COLUMN.get(task, task)


def test_sets(spec: DataSpec, task: str, *, seed: int = 0, skip_bad: bool = False,
              protocol: str = "aio3") -> list[TestSet]:
    """The columns of ``evaluate.py --task``: AIO-3/AIO-5 tasks, the 11 CDD-11 categories, or "mixed".

    Embedded and tfds data use the tiles of the held-out embedded photos (tfds gives clean
    training images only); folders use the official test sets, centre-cropped to a
    multiple of 16 as the official AIO scripts do (CDD-11 images whole, as MoCE-IR).
    "mixed" regions carry the recipes of ``protocol`` (MIXED_KINDS), under
    MIXED_LAYOUTS layouts per embedded tile and one per folder image. ``skip_bad``
    substitutes the next readable image for a bad one (training's validation); the
    evaluator passes False and skips bad images itself, so none is counted twice.
    """
    if task not in EVAL_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {EVAL_TASKS}")
    if protocol not in MIXED_KINDS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if spec.kind != "folder":
        tiles = embedded.test_tiles()
        if task == "mixed":
            mixed_tiles = embedded.test_tiles(embedded.MIXED_TILE)
            return [TestSet("Mixed", MixedTestSource(mixed_tiles, MIXED_KINDS[protocol], seed, MIXED_LAYOUTS))]
        if task == "cdd11":
            return [TestSet(c, SyntheticTestSource(tiles, c, seed)) for c in CDD11_CATEGORIES]
        return [TestSet(_label(t, s, task), SyntheticTestSource(tiles, t, seed, sigma=s or 25.0))
                for t, s in layouts.PROTOCOL_TESTS[task]]
    assert spec.path is not None
    if task == "cdd11":
        return [TestSet(c, PairSource(pairs, skip_bad=skip_bad))
                for c, pairs in layouts.cdd11_pairs(spec.path, "test").items()]
    if task == "mixed":
        # Regions of clean test images carry different degradations of the protocol.
        if protocol == "cdd11":
            pairs = next(iter(layouts.cdd11_pairs(spec.path, "test").values()))
            clean = [read_rgb(p.clean) for p in pairs]
        else:
            clean = [centre_crop(read_rgb(p.clean), 16) for p in layouts.aio_test_pairs(spec.path, "denoise")]
        return [TestSet("Mixed", MixedTestSource(clean, MIXED_KINDS[protocol], seed, layouts=1))]
    return [TestSet(_label(t, s, task), PairSource(layouts.aio_test_pairs(spec.path, t, s), skip_bad=skip_bad,
                                                   crop_to=16, noise_seed=seed))
            for t, s in layouts.PROTOCOL_TESTS[task]]
