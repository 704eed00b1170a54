"""The embedded split: every bundled photo accounted for, the held-out tiles fixed, the size logged."""

import hashlib
import logging
import re
from pathlib import Path

from cea_jax.data import catalog, embedded

# Files of the wheel's skimage/data folder that are not photographs of a scene.
NOT_PHOTOS = {
    "chessboard_GRAY.png", "chessboard_RGB.png", "color.png", "phantom.png",  # synthetic patterns
    "horse.png", "logo.png",  # a binary silhouette and a graphic with alpha
    "lfw_subset.npy",  # 25x25 face thumbnails, smaller than any crop
    "multipage.tif", "multipage_rgb.tif", "no_time_for_that_tiny.gif",  # file-format test fixtures
    "motorcycle_disp.npz", "lbpcascade_frontalface_opencv.xml",  # a depth map and a classifier
}
README = Path(__file__).resolve().parents[2] / "data" / "README.md"


def _digest(tiles):
    h = hashlib.sha256()
    for tile in tiles:
        h.update(tile.tobytes())
    return h.hexdigest()


def test_every_bundled_photo_is_trained_on_held_out_or_excluded_for_a_reason():
    train, test, excluded = set(embedded.TRAIN_PHOTOS), set(embedded.TEST_PHOTOS), set(embedded.EXCLUDED_PHOTOS)
    assert len(train) == len(embedded.TRAIN_PHOTOS) and not train & test and not (train | test) & excluded
    assert train | test | excluded == set(embedded.BUNDLED_PHOTOS)
    shipped = {p.name for p in embedded.BUNDLED_DIR.iterdir() if p.is_file() and p.suffix not in (".py", ".pyi")}
    shipped.discard("README.txt")
    assert set(embedded.BUNDLED_PHOTOS.values()) <= shipped  # read locally, never downloaded
    assert shipped - NOT_PHOTOS == set(embedded.BUNDLED_PHOTOS.values())  # no bundled photo forgotten


def test_greyscale_photos_train_as_three_equal_channels_at_the_test_scale():
    photos = dict(zip(embedded.TRAIN_PHOTOS, embedded.train_photos()))
    camera, _ = photos["camera"]
    assert camera.shape[2] == 3 and (camera == camera[..., :1]).all()
    retina, _ = photos["retina"]
    assert not (retina[..., 0] == retina[..., 1]).all()
    assert all(min(photo.shape[:2]) == embedded.TEST_SHORT_SIDE for photo, _ in photos.values())


def test_only_the_left_stereo_view_carries_the_real_depth_map():
    photos = dict(zip(embedded.TRAIN_PHOTOS, embedded.train_photos()))
    with_depth = [name for name, (_, depth) in photos.items() if depth is not None]
    assert with_depth == [embedded.DEPTH_PHOTO] == ["motorcycle_left"]
    photo, depth = photos["motorcycle_left"]
    assert depth.shape == photo.shape[:2] and 0 <= depth.min() < depth.max() <= 1


def test_held_out_tiles_are_the_ones_every_recorded_result_was_scored_on():
    assert len(embedded.test_tiles()) == 22 and len(embedded.test_tiles(embedded.MIXED_TILE)) == 88
    assert _digest(embedded.test_tiles()) == "02fb25d356552835c6a040661dd91de1883488954e5cf897504765db6c08451e"
    assert _digest(embedded.test_tiles(64)) == "a53a55a466e341268dfd074ed5a26d1d0925d3efcfda1471d28dfaf69791d76e"


def test_building_the_training_source_logs_its_size_once(caplog):
    size = embedded.training_size()
    assert size.photos == len(embedded.TRAIN_PHOTOS) == 12
    assert size.pixels == sum(p.shape[0] * p.shape[1] for p, _ in embedded.train_photos()) == 889_600
    with caplog.at_level(logging.INFO, logger="cea_jax.data.catalog"):
        catalog.train_source(catalog.parse_data("embedded"), "aio3", seed=0, crop=32, mix_prob=0.5)
    lines = [r.getMessage() for r in caplog.records if "embedded training set" in r.getMessage()]
    assert lines == [f"embedded training set: 12 photos, 889600 pixels at short side {embedded.TRAIN_SHORT_SIDE} "
                     "(held out: chelsea, rocket, coffee, astronaut)"]


def test_data_readme_names_the_split_the_code_uses():
    section = README.read_text().split("## All-in-one restoration")[1]

    def names(label):
        match = re.search(rf"^{label}: (.+)$", section, flags=re.MULTILINE)
        assert match, f"data/README.md has no '{label}:' line"
        return tuple(re.findall(r"`(\w+)`", match.group(1)))

    assert names("Held out for testing") == embedded.TEST_PHOTOS
    assert names("Trained on") == embedded.TRAIN_PHOTOS
    assert names("Not used") == tuple(embedded.EXCLUDED_PHOTOS)
