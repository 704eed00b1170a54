"""``--data tfds:NAME``: clean images from a tiny TFDS dataset the test prepares itself."""

import numpy as np
import pytest
import tensorflow_datasets as tfds  # in the [test] extra

from cea_jax.data import catalog, pipeline
from cea_jax.data.io import DataLayoutError


class TinyPhotos(tfds.core.GeneratorBasedBuilder):
    """Four random 40x50 RGB images, stored as ArrayRecord (readable without TensorFlow)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        image = tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib")
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"image": image}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(4):
            yield i, {"image": rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)}


def test_tfds_images_feed_the_training_pipeline(tmp_path):
    TinyPhotos(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    spec = catalog.parse_data("tfds:tiny_photos:train", tfds_data_dir=str(tmp_path))
    source = catalog.train_source(spec, "aio3", seed=0, crop=32)
    assert len(source) == 4 * 5 * source.repeats
    batch = next(iter(pipeline.train_dataset(source, seed=0, crop=32, batch_size=5)))
    assert batch["degraded"].shape == (5, 32, 32, 3)
    assert not np.array_equal(batch["degraded"], batch["clean"])


def test_missing_tfds_dataset_is_a_clear_error(tmp_path):
    spec = catalog.parse_data("tfds:not_prepared_here", tfds_data_dir=str(tmp_path))
    with pytest.raises(DataLayoutError, match="tfds:not_prepared_here:train: cannot open a prepared dataset"):
        catalog.train_source(spec, "aio3", seed=0, crop=32)
