"""Clean images from a prepared TensorFlow Datasets dataset (``--data tfds:NAME[:SPLIT]``).

Random access through ``tfds.data_source`` (ArrayRecord files, no TensorFlow needed at
read time), so grain can shuffle and shard it like any other source. The import is lazy:
tensorflow-datasets is an optional extra (``pip install .[tfds]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cea_jax.data.io import BadImageError, DataLayoutError
from cea_jax.data.sources import CleanImages


class TfdsImages(CleanImages):
    """The ``image_key`` feature of a TFDS split as uint8 RGB (depth: none, synthesised later)."""

    def __init__(self, name: str, split: str = "train", data_dir: str | None = None, image_key: str = "image"):
        self.name, self.split, self.data_dir, self.image_key = name, split, data_dir, image_key
        self._source: Any = None
        self._length = len(self._open())

    def _open(self) -> Any:
        if self._source is None:
            try:
                import tensorflow_datasets as tfds
            except ImportError:
                raise DataLayoutError(
                    "--data tfds:... needs tensorflow-datasets; install it with `pip install .[tfds]`"
                ) from None
            try:
                self._source = tfds.data_source(self.name, split=self.split, data_dir=self.data_dir)
            except Exception as err:  # tfds raises several unrelated types for a missing dataset
                raise DataLayoutError(
                    f"tfds:{self.name}:{self.split}: cannot open a prepared dataset ({err}); prepare it first "
                    "with `tfds build` (ArrayRecord format) or pass --tfds-data-dir"
                ) from None
        return self._source

    def __getstate__(self) -> dict[str, Any]:
        # The ArrayRecord readers are reopened in each grain worker process.
        return {**self.__dict__, "_source": None}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        example = self._open()[index]
        where = f"tfds:{self.name}:{self.split} record {index}"
        if self.image_key not in example:
            raise BadImageError(f"{where}: no {self.image_key!r} feature (has {sorted(example)})")
        image = np.asarray(example[self.image_key])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise BadImageError(f"{where}: image is {image.dtype} {image.shape}; expected uint8 [H, W, 3] RGB")
        return image, None

    def __repr__(self) -> str:
        return f"TfdsImages({self.name}:{self.split}, {self._length} images)"
