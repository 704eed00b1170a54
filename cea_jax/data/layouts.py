"""Where the real all-in-one datasets live on disk and how their files pair up.

Two AIO folder conventions are in use, PromptIR/AdaIR (``Train/...``, ``test/...``) and
MoCE-IR (``denoising/...``, ``deraining/...``), plus CDD-11 (``cdd11/{train,test}/<category>``).
Discovery only lists files and matches names, so a wrong layout fails at start-up with
the folder or file it expected, before any image is decoded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from cea_jax.data.degrade import CDD11_CATEGORIES
from cea_jax.data.io import DataLayoutError, list_images

AIO_TASKS = ("denoise", "derain", "dehaze", "deblur", "enhance")
DENOISE_SIGMAS = (15, 25, 50)
# How many times each training pair is repeated per epoch (PromptIR / AdaIR / MoCE-IR):
# denoising repeats every clean image 3x per sigma; the rest balance the dataset sizes.
TRAIN_MULTIPLIERS = {"denoise": 3, "derain": 120, "dehaze": 1, "deblur": 5, "enhance": 20}
PROTOCOL_TASKS = {"aio3": AIO_TASKS[:3], "aio5": AIO_TASKS}
# The test columns of each protocol: (task, sigma) with sigma only for denoising.
PROTOCOL_TESTS = {
    "aio3": (("denoise", 15), ("denoise", 25), ("denoise", 50), ("derain", 0), ("dehaze", 0)),
    "aio5": (("denoise", 25), ("derain", 0), ("dehaze", 0), ("deblur", 0), ("enhance", 0)),
}


@dataclasses.dataclass(frozen=True)
class Pair:
    """One sample: a clean file and its degraded partner (None: degraded online by ``sigma`` noise)."""

    task: str
    clean: Path
    degraded: Path | None = None
    sigma: float = 0.0


def _stem_key(path: Path) -> str:
    return path.stem


def _rain_key(path: Path) -> str:
    # Rain100L / RainTrainL: "rain-12.png" pairs with "norain-12.png".
    return re.sub(r"^(no)?rain-", "", path.stem)


def _haze_key(path: Path) -> str:
    # RESIDE: hazy "0001_0.8_0.2.jpg" pairs with clear "0001.png" (or .jpg).
    return path.stem.split("_")[0]


@dataclasses.dataclass(frozen=True)
class PairedFolders:
    """Degraded files (in one or more folders, glob allowed) paired with a clean folder by a name key."""

    degraded: tuple[str, ...]
    clean: str
    key: Callable[[Path], str] = _stem_key


@dataclasses.dataclass(frozen=True)
class CleanFolders:
    """Clean images only (denoising: noise is added online)."""

    folders: tuple[str, ...]


Spec = PairedFolders | CleanFolders

LAYOUTS: dict[str, dict[str, dict[str, Spec]]] = {
    "promptir": {
        "train": {
            "denoise": CleanFolders(("Train/Denoise",)),
            "derain": PairedFolders(("Train/Derain/rainy",), "Train/Derain/gt", _rain_key),
            "dehaze": PairedFolders(("Train/Dehaze/synthetic/part*",), "Train/Dehaze/original", _haze_key),
            "deblur": PairedFolders(("Train/Deblur/blur",), "Train/Deblur/sharp"),
            "enhance": PairedFolders(("Train/Enhance/low",), "Train/Enhance/gt"),
        },
        "test": {
            "denoise": CleanFolders(("test/denoise/bsd68",)),
            "derain": PairedFolders(("test/derain/Rain100L/input",), "test/derain/Rain100L/target", _rain_key),
            "dehaze": PairedFolders(("test/dehaze/input",), "test/dehaze/target", _haze_key),
            "deblur": PairedFolders(("test/deblur/gopro/input",), "test/deblur/gopro/target"),
            "enhance": PairedFolders(("test/enhance/lol/input",), "test/enhance/lol/target"),
        },
    },
    "moceir": {
        "train": {
            "denoise": CleanFolders(("denoising/WaterlooED", "denoising/BSD400")),
            "derain": PairedFolders(("deraining/RainTrainL/rainy",), "deraining/RainTrainL/gt", _rain_key),
            "dehaze": PairedFolders(("dehazing/RESIDE/part*",), "dehazing/RESIDE/clear", _haze_key),
            "deblur": PairedFolders(
                ("deblurring/GoPro/crop/train/input_crops",), "deblurring/GoPro/crop/train/target_crops"
            ),
            "enhance": PairedFolders(("llie/LOLv1/Train/input",), "llie/LOLv1/Train/target"),
        },
        "test": {
            "denoise": CleanFolders(("denoising/cBSD68/original_png",)),
            "derain": PairedFolders(("deraining/Rain100L/rainy",), "deraining/Rain100L/gt", _rain_key),
            "dehaze": PairedFolders(("dehazing/SOTS/outdoor/hazy",), "dehazing/SOTS/outdoor/gt", _haze_key),
            "deblur": PairedFolders(("deblurring/GoPro/test/input",), "deblurring/GoPro/test/target"),
            "enhance": PairedFolders(("llie/LOLv1/Test/input",), "llie/LOLv1/Test/target"),
        },
    },
}


def detect_aio_layout(root: Path) -> str:
    """"promptir" or "moceir" from the top-level folders of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: data folder not found")
    if (root / "Train").is_dir() or (root / "test").is_dir():
        return "promptir"
    if any((root / d).is_dir() for d in ("denoising", "deraining", "dehazing", "deblurring", "llie")):
        return "moceir"
    raise DataLayoutError(
        f"{root}: not an all-in-one dataset root; expected PromptIR/AdaIR folders (Train/, test/) "
        "or MoCE-IR folders (denoising/, deraining/, dehazing/, deblurring/, llie/); see data/README.md"
    )


def _expand(root: Path, pattern: str) -> list[Path]:
    folders = sorted(p for p in root.glob(pattern) if p.is_dir())
    if not folders:
        raise DataLayoutError(f"{root / pattern}: folder not found")
    return folders


def _clean_files(root: Path, spec: CleanFolders) -> list[Path]:
    return [f for pattern in spec.folders for folder in _expand(root, pattern) for f in list_images(folder)]


def _paired_files(root: Path, spec: PairedFolders) -> list[tuple[Path, Path]]:
    degraded = [f for pattern in spec.degraded for folder in _expand(root, pattern) for f in list_images(folder)]
    clean_by_key: dict[str, Path] = {}
    for path in list_images(root / spec.clean):
        clean_by_key.setdefault(spec.key(path), path)
    pairs = []
    for path in degraded:
        partner = clean_by_key.get(spec.key(path))
        if partner is None:
            raise DataLayoutError(f"{path}: no clean partner named like {spec.key(path)!r} in {root / spec.clean}")
        pairs.append((path, partner))
    return pairs


def aio_train_pairs(root: Path, protocol: str) -> list[Pair]:
    """All training samples of an AIO protocol, multipliers applied (so an epoch matches the papers')."""
    layout = LAYOUTS[detect_aio_layout(root)]["train"]
    pairs: list[Pair] = []
    for task in PROTOCOL_TASKS[protocol]:
        spec = layout[task]
        repeat = TRAIN_MULTIPLIERS[task]
        if isinstance(spec, CleanFolders):
            files = _clean_files(root, spec)
            pairs += [Pair(task, f, None, float(s)) for s in DENOISE_SIGMAS for _ in range(repeat) for f in files]
        else:
            pairs += [Pair(task, c, d) for _ in range(repeat) for d, c in _paired_files(root, spec)]
    return pairs


def aio_test_pairs(root: Path, task: str, sigma: float = 0.0) -> list[Pair]:
    """The test samples of one AIO task (denoising: clean images, noised at ``sigma`` by the loader)."""
    spec = LAYOUTS[detect_aio_layout(root)]["test"][task]
    if isinstance(spec, CleanFolders):
        return [Pair(task, f, None, float(sigma)) for f in _clean_files(root, spec)]
    return [Pair(task, c, d) for d, c in _paired_files(root, spec)]


def cdd11_root(root: Path) -> Path:
    """The folder holding CDD-11's train/ and test/ (``root/cdd11`` or ``root`` itself)."""
    root = Path(root)
    for candidate in (root / "cdd11", root):
        if (candidate / "train" / "clear").is_dir() or (candidate / "test" / "clear").is_dir():
            return candidate
    raise DataLayoutError(
        f"{root}: no CDD-11 data; expected cdd11/{{train,test}}/{{clear,{','.join(CDD11_CATEGORIES[:3])},...}}/NAME.png"
    )


def cdd11_pairs(root: Path, split: str, categories: Sequence[str] = CDD11_CATEGORIES) -> dict[str, list[Pair]]:
    """CDD-11 samples per category; degraded and clean share the file name."""
    base = cdd11_root(root) / split
    clean = {p.name: p for p in list_images(base / "clear")}
    out: dict[str, list[Pair]] = {}
    for category in categories:
        pairs = []
        for path in list_images(base / category):
            if path.name not in clean:
                raise DataLayoutError(f"{path}: no clean partner {base / 'clear' / path.name}")
            pairs.append(Pair(category, clean[path.name], path))
        out[category] = pairs
    return out
