"""grain pipelines: training (shuffle, random crop, dihedral op, online noise, batch, prefetch).

The training iterator is a grain ``DatasetIterator``: its ``get_state()`` /
``set_state()`` are what the checkpoint stores, so a resumed run sees exactly the
batches an uninterrupted run would. All randomness comes from grain's per-index seeds,
so the stream is identical with 0 or N worker processes.

Worker processes (``workers`` > 0) are spawned interpreters that import jax (grain's
profiler hooks and tree utilities do) and this package before their first batch: on a
loaded 2-core CPU the first batch of 2 workers took 45 s against 2.6 s in-process. A
worker must never open the accelerator its trainer holds (a second process opening a TPU
waits on libtpu's lock; on a GPU it would try to preallocate the memory the trainer
already took), so each worker pins its JAX to the CPU before it builds its pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grain
import numpy as np
from absl import flags

from cea_jax.data.degrade import add_uint8_noise


def dihedral(image: np.ndarray, op: int) -> np.ndarray:
    """One of the 8 symmetries of the square: rotate by 90*(op % 4) degrees, then flip if op >= 4."""
    out = np.rot90(image, op % 4)
    return out[:, ::-1] if op >= 4 else out


class TrainTransform(grain.transforms.RandomMap):
    """Random crop -> one of the 7 non-identity dihedral ops -> uint8 noise for denoising samples."""

    def __init__(self, crop: int):
        self.crop = crop

    def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        degraded, clean = element["degraded"], element["clean"]
        h, w = clean.shape[:2]
        if h < self.crop or w < self.crop:
            raise ValueError(f"training image of {w}x{h} is smaller than the {self.crop}x{self.crop} crop")
        top, left = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        op = int(rng.integers(1, 8))
        clean = np.ascontiguousarray(dihedral(clean[window], op))
        if element["sigma"] > 0:
            degraded = add_uint8_noise(clean, float(element["sigma"]), rng)
        else:
            degraded = np.ascontiguousarray(dihedral(degraded[window], op))
        return {"degraded": degraded, "clean": clean, "task": element["task"]}


def pin_worker_to_cpu(worker_index: int, worker_count: int) -> None:
    """grain ``worker_init_fn``: this worker's JAX, if anything in it ever touches JAX, stays on the CPU."""
    del worker_index, worker_count
    import jax

    jax.config.update("jax_platforms", "cpu")


def train_dataset(source: Sequence, *, seed: int, crop: int, batch_size: int, workers: int = 0,
                  shard_index: int = 0, shard_count: int = 1) -> grain.IterDataset:
    """An endless stream of batches {"degraded", "clean": uint8 [B, crop, crop, 3], "task": int32 [B]}.

    ``shard_index``/``shard_count`` give each host its own slice of the data (multi-host);
    ``batch_size`` is the per-host batch. The source is reshuffled every epoch.
    """
    if len(source) < shard_count:
        raise ValueError(f"dataset of {len(source)} samples cannot be split across {shard_count} hosts")
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    ds = ds.shuffle(seed=seed).repeat().random_map(TrainTransform(crop), seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True)
    iter_ds = ds.to_iter_dataset()
    if workers > 0:
        # grain's worker processes read absl flags; outside an absl app they are unparsed.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                                      worker_init_fn=pin_worker_to_cpu)
    return iter_ds


def take(source: Sequence, limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The first ``limit`` records of a test source, in order."""
    count = len(source) if limit is None else min(limit, len(source))
    for index in range(count):
        yield source[index]
