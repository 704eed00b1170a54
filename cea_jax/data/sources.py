"""grain random-access sources: index -> one (degraded, clean) record, deterministic per index.

A record is a dict of numpy arrays: ``degraded`` and ``clean`` uint8 [H, W, 3], ``sigma``
float32 (> 0: Gaussian noise of that level still has to be added on uint8, after
cropping, as the AIO loaders do) and ``task`` int32 (an index into TASKS). Randomness
inside a source is drawn from ``numpy.random.default_rng((seed, index))``, so a record
depends only on its index, whichever worker process reads it.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence

import numpy as np

from cea_jax.data import degrade
from cea_jax.data.io import BadImageError, check_pair, read_rgb
from cea_jax.data.layouts import Pair
from cea_jax.data.windows import random_window, recolour

log = logging.getLogger(__name__)

TASKS = ("denoise", "derain", "dehaze", "deblur", "enhance") + degrade.CDD11_CATEGORIES + ("mixed",)
TASK_IDS = {name: i for i, name in enumerate(TASKS)}
# The recipe that synthesises each AIO task (CDD-11 categories are their own recipes).
TASK_RECIPE = {"denoise": "noise", "derain": "rain", "dehaze": "haze", "deblur": "blur", "enhance": "low"}


def record(degraded: np.ndarray, clean: np.ndarray, task: str, sigma: float = 0.0) -> dict[str, np.ndarray]:
    """The record layout every source returns."""
    return {
        "degraded": degraded,
        "clean": clean,
        "sigma": np.float32(sigma),
        "task": np.int32(TASK_IDS[task]),
    }


def centre_crop(image: np.ndarray, base: int = 16) -> np.ndarray:
    """Crop the centre to a multiple of ``base`` per side, as the official test scripts do."""
    h, w = image.shape[:2]
    nh, nw = h - h % base, w - w % base
    if nh == 0 or nw == 0:
        raise BadImageError(f"image of size {w}x{h} is smaller than {base} pixels on a side")
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[top : top + nh, left : left + nw]


def load_pair(pair: Pair, min_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair (the denoising member is the clean image itself, noised later).

    Clean-only (denoising) images may be grayscale, as BSD400 is; paired images must be RGB.
    """
    clean = read_rgb(pair.clean, allow_gray=pair.degraded is None)
    if min(clean.shape[:2]) < min_size:
        raise BadImageError(
            f"{pair.clean}: {clean.shape[1]}x{clean.shape[0]} is smaller than the {min_size}x{min_size} crop"
        )
    if pair.degraded is None:
        return clean, clean
    degraded = read_rgb(pair.degraded)
    check_pair(degraded, clean, pair.degraded, pair.clean)
    return degraded, clean


class _FileSource(abc.ABC):
    """Base of file-backed sources: on a bad file either raise (default) or log it and use the next index."""

    skip_bad: bool = False

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def _load(self, index: int) -> dict[str, np.ndarray]: ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        n = len(self)
        for attempt in range(n):
            try:
                return self._load((index + attempt) % n)
            except BadImageError as err:
                if not self.skip_bad:
                    raise
                self._warn_once(err)
        raise BadImageError(f"every sample of {type(self).__name__} is bad")

    def _warn_once(self, err: BadImageError) -> None:
        """One warning per bad file and process: epochs, and recipes that repeat a pair list
        (PromptIR repeats rain pairs 120 times), would otherwise repeat it hundreds of times."""
        warned = self.__dict__.setdefault("_warned", set())
        if str(err) not in warned:
            warned.add(str(err))
            log.warning("skipping bad sample: %s", err)


class PairSource(_FileSource):
    """Training/test pairs from files (real AIO layouts)."""

    def __init__(self, pairs: Sequence[Pair], skip_bad: bool = False, crop_to: int = 0,
                 noise_seed: int | None = None, min_size: int = 0):
        """``crop_to`` > 0 centre-crops to a multiple of it (tests); ``noise_seed`` adds the
        denoising noise here with a fixed per-index seed (tests) instead of online
        (training); ``min_size`` rejects images smaller than the training crop."""
        if not pairs:
            raise ValueError("PairSource needs at least one pair")
        self.pairs = list(pairs)
        self.skip_bad = skip_bad
        self.crop_to = crop_to
        self.noise_seed = noise_seed
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> dict[str, np.ndarray]:
        pair = self.pairs[index]
        degraded, clean = load_pair(pair, self.min_size)
        if self.crop_to:
            degraded, clean = centre_crop(degraded, self.crop_to), centre_crop(clean, self.crop_to)
        sigma = pair.sigma
        if sigma and self.noise_seed is not None:
            rng = np.random.default_rng((self.noise_seed, int(sigma), index))
            degraded, sigma = degrade.add_uint8_noise(clean, sigma, rng), 0.0
        return record(degraded, clean, pair.task, sigma)

    def __repr__(self) -> str:
        return f"PairSource({len(self.pairs)} pairs)"


class CDD11TrainSource(_FileSource):
    """CDD-11 training: each index draws a category uniformly, then an image of it."""

    def __init__(self, by_category: dict[str, Sequence[Pair]], seed: int, skip_bad: bool = False,
                 min_size: int = 0):
        empty = [c for c, pairs in by_category.items() if not pairs]
        if not by_category or empty:
            raise ValueError(f"CDD-11 categories without images: {empty or 'all'}")
        self.categories = sorted(by_category)
        self.by_category = {c: list(by_category[c]) for c in self.categories}
        self.seed = seed
        self.skip_bad = skip_bad
        self.min_size = min_size
        self._length = sum(len(p) for p in self.by_category.values())

    def __len__(self) -> int:
        return self._length

    def _load(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng((self.seed, index))
        pairs = self.by_category[self.categories[rng.integers(len(self.categories))]]
        pair = pairs[rng.integers(len(pairs))]
        degraded, clean = load_pair(pair, self.min_size)
        return record(degraded, clean, pair.task)

    def __repr__(self) -> str:
        return f"CDD11TrainSource({len(self.categories)} categories, {self._length} images)"


class CleanImages(abc.ABC):
    """Random access to clean uint8 RGB images, each with an optional depth map [H, W] in [0, 1]."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]: ...


class ArrayImages(CleanImages):
    """Clean images held in memory (the embedded photos)."""

    def __init__(self, items: Sequence[tuple[np.ndarray, np.ndarray | None]]):
        self.items = tuple(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.items[index]

    def __repr__(self) -> str:
        return f"ArrayImages({len(self.items)} images)"


class SyntheticSource:
    """Training pairs synthesised online from clean images with the ``degrade`` recipes.

    Index i takes task ``tasks[i % T]`` (a (task, sigma) tuple) and clean image
    ``(i // T) % N``; ``repeats`` sets how many variants of each (task, image) an epoch
    holds. With ``window`` a random window of that size is cut out before degrading
    (cheaper, and the random crop later picks inside it), downscaled by a random factor
    in ``scales`` (scale jitter; (1, 1) = none). With ``recoloured`` each clean image gets new
    colours (``windows.recolour``) before it is degraded.
    """

    def __init__(self, images: CleanImages, tasks: Sequence[tuple[str, float]], seed: int,
                 repeats: int = 64, window: int | None = None, min_size: int = 0,
                 scales: tuple[float, float] = (1.0, 1.0), recoloured: bool = False):
        if len(images) == 0 or not tasks:
            raise ValueError("SyntheticSource needs clean images and at least one task")
        self.images = images
        self.tasks = tuple(tasks)
        self.seed = seed
        self.repeats = repeats
        self.window = window
        self.min_size = min_size
        self.scales = scales
        self.recoloured = recoloured

    def __len__(self) -> int:
        return len(self.tasks) * len(self.images) * self.repeats

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        task, sigma = self.tasks[index % len(self.tasks)]
        image_index = (index // len(self.tasks)) % len(self.images)
        clean, depth = self.images[image_index]
        if min(clean.shape[:2]) < self.min_size:
            raise BadImageError(f"{self.images!r} image {image_index}: {clean.shape[1]}x{clean.shape[0]} "
                                f"is smaller than the {self.min_size}x{self.min_size} crop")
        rng = np.random.default_rng((self.seed, index))
        if self.window is not None:
            clean, depth = random_window(clean, depth, rng, self.window, self.scales, self.min_size)
        if self.recoloured:
            clean = recolour(clean, rng)
        if task == "denoise":
            return record(clean, clean, task, sigma)
        if depth is None:
            depth = degrade.synthetic_depth(clean.shape[:2], rng)
        recipe = TASK_RECIPE.get(task, task)
        return record(degrade.apply(recipe, clean, depth, rng), clean, task)

    def __repr__(self) -> str:
        recoloured = ", recoloured" if self.recoloured else ""
        return f"SyntheticSource({len(self.images)} images x {len(self.tasks)} tasks x {self.repeats}{recoloured})"


class SyntheticTestSource:
    """A fixed test set: each clean tile degraded once by one recipe, seeded by (seed, task, index).

    ``task`` is an AIO task (with ``sigma`` for denoising) or a CDD-11 category.
    """

    def __init__(self, tiles: Sequence[np.ndarray], task: str, seed: int = 0, sigma: float = 25.0):
        if task not in TASK_IDS or task == "mixed":
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS[:-1]} (mixed: MixedTestSource)")
        self.tiles = tuple(tiles)
        self.task = task
        self.seed = seed
        self.sigma = sigma

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        clean = self.tiles[index]
        rng = np.random.default_rng((self.seed, TASK_IDS[self.task], int(self.sigma), index))
        depth = degrade.synthetic_depth(clean.shape[:2], rng)
        degraded = degrade.apply(TASK_RECIPE.get(self.task, self.task), clean, depth, rng, sigma=self.sigma)
        return record(degraded, clean, self.task)


class MixedTestSource:
    """The region-labelled mixed test set: every tile under ``layouts`` Voronoi layouts.

    Index i is tile ``i % T`` under layout ``i // T``; a layout has 2 or 3 regions
    (alternately), each carrying a different recipe drawn from ``kinds``. Besides the
    usual fields a record holds ``labels`` int32 [H, W] (index into ``region_kinds``),
    ``region_kinds`` (the recipe names) and ``full`` uint8 [K, H, W, 3], the tile fully
    degraded by each region's recipe (what the mixing penalty compares against).
    """

    def __init__(self, tiles: Sequence[np.ndarray], kinds: Sequence[str], seed: int = 0, layouts: int = 8,
                 sigma: float = 25.0):
        if len(kinds) < 2 or layouts < 1:
            raise ValueError(f"MixedTestSource needs >= 2 kinds and >= 1 layout, got {kinds} and {layouts}")
        self.tiles = tuple(tiles)
        self.kinds = tuple(kinds)
        self.seed = seed
        self.layouts = layouts
        self.sigma = sigma

    def __len__(self) -> int:
        return len(self.tiles) * self.layouts

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        tile, layout = index % len(self.tiles), index // len(self.tiles)
        clean = self.tiles[tile]
        rng = np.random.default_rng((self.seed, TASK_IDS["mixed"], int(self.sigma), index))
        count = min(len(self.kinds), 2 + layout % 2)
        kinds = [self.kinds[k] for k in rng.choice(len(self.kinds), count, replace=False)]
        depth = degrade.synthetic_depth(clean.shape[:2], rng)
        degraded, labels, full = degrade.spatially_mixed(clean, kinds, depth, rng, sigma=self.sigma)
        return {**record(degraded, clean, "mixed"), "labels": labels.astype(np.int32),
                "region_kinds": np.asarray(kinds), "full": full}


class MixedTrainSource:
    """Spatially mixed training crops on top of any training source.

    They train for the case CEA claims to win: degradations that vary inside one image.

    With probability ``mix_prob`` (drawn per index) a sample of ``base`` becomes a mixed
    one: a random ``window`` of its pair is cut out, 1-2 (task, level) entries of the
    protocol whose task differs from the base's are drawn uniformly without replacement
    (every noise level is its own entry) and synthesised on its clean image, and 2-3
    Voronoi regions (``feather`` pixels of cross-fade, 0 = hard borders) take their
    pixels from the base degradation and from those. The base region keeps the real
    degraded pixels of dataset folders; noise is added here rather than online. Other
    indices pass through unchanged, so mix_prob 0 is exactly the base source.

    A mixed record also holds ``labels`` int32 [H, W] (the region of each pixel, 0 = the
    base), ``region_tasks`` (task names) and ``region_sigmas`` float32 (noise levels, 0
    for other tasks), one entry per region; the training transform drops them.
    """

    def __init__(self, base: Sequence, tasks: Sequence[tuple[str, float]], seed: int, mix_prob: float,
                 window: int, feather: float = 0.0, max_regions: int = 3):
        if not 0.0 <= mix_prob <= 1.0 or feather < 0 or max_regions < 2:
            raise ValueError(f"need 0 <= mix_prob <= 1, feather >= 0, max_regions >= 2; got "
                             f"{mix_prob}, {feather}, {max_regions}")
        self.base = base
        self.tasks = tuple(tasks)
        self.seed = seed
        self.mix_prob = mix_prob
        self.window = window
        self.feather = feather
        self.max_regions = max_regions

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rec = self.base[index]
        rng = np.random.default_rng((self.seed, TASK_IDS["mixed"], index))
        base_task = TASKS[int(rec["task"])]
        others = [(t, s) for t, s in self.tasks if t != base_task]
        if rng.random() >= self.mix_prob or not others:
            return rec
        degraded, clean = rec["degraded"], rec["clean"]
        h, w = clean.shape[:2]
        wh, ww = min(self.window, h), min(self.window, w)
        top, left = int(rng.integers(h - wh + 1)), int(rng.integers(w - ww + 1))
        degraded, clean = (a[top : top + wh, left : left + ww] for a in (degraded, clean))
        if rec["sigma"] > 0:
            degraded = degrade.add_uint8_noise(clean, float(rec["sigma"]), rng)
        count = int(rng.integers(2, min(self.max_regions, len(others) + 1) + 1))
        picked = [others[k] for k in rng.choice(len(others), count - 1, replace=False)]
        depth = degrade.synthetic_depth(clean.shape[:2], rng)
        versions = [degraded] + [degrade.apply(TASK_RECIPE.get(t, t), clean, depth, rng, sigma=s or 25.0)
                                 for t, s in picked]
        labels = degrade.voronoi_regions(clean.shape[:2], count, rng)
        mixed = degrade.compose_regions(versions, labels, self.feather)
        regions = [(base_task, float(rec["sigma"]))] + picked
        return {**record(mixed, np.ascontiguousarray(clean), "mixed"), "labels": labels.astype(np.int32),
                "region_tasks": np.asarray([t for t, _ in regions]),
                "region_sigmas": np.asarray([s for _, s in regions], np.float32)}

    def __repr__(self) -> str:
        return f"MixedTrainSource({self.base!r}, mix_prob={self.mix_prob}, feather={self.feather})"
