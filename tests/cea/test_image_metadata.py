"""Image files whose metadata changes the picture: EXIF orientation, several frames, transparency."""

import numpy as np
import pytest
from PIL import Image

from cea_jax import restore
from cea_jax.data.io import BadImageError, read_rgb
from cea_jax.data.layouts import Pair
from cea_jax.data.sources import load_pair

ORIENTATION = 0x0112
# What a viewer shows for each EXIF orientation of the stored pixels (the EXIF specification's table).
SHOWN = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # stored lying on its left side: turned 90 degrees clockwise to show
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _pixels(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_oriented(path, stored, orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(stored).save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", sorted(SHOWN))
def test_exif_orientation_is_applied_on_read(tmp_path, orientation):
    stored = _pixels()
    src = _save_oriented(tmp_path / "phone.png", stored, orientation)
    np.testing.assert_array_equal(read_rgb(src), SHOWN[orientation](stored))


def test_a_training_pair_with_one_rotated_member_compares_the_pictures_as_shown(tmp_path):
    clean = _pixels(20, 32)
    degraded_as_shown = 255 - clean
    # The degraded member is stored lying on its side with orientation 6, as a phone writes it.
    degraded = _save_oriented(tmp_path / "rainy.png", np.rot90(degraded_as_shown, 1).copy(), 6)
    Image.fromarray(clean).save(tmp_path / "clean.png")
    got_degraded, got_clean = load_pair(Pair("derain", tmp_path / "clean.png", degraded))
    np.testing.assert_array_equal(got_degraded, degraded_as_shown)
    np.testing.assert_array_equal(got_clean, clean)


def test_a_damaged_exif_block_is_refused_naming_the_file(tmp_path):
    src = tmp_path / "broken-exif.png"
    Image.fromarray(_pixels()).save(src, exif=b"\x00\x00\x00")
    with pytest.raises(BadImageError, match="broken-exif.png: unreadable EXIF metadata"):
        read_rgb(src)


@pytest.mark.parametrize("suffix", [".tif", ".gif", ".png", ".webp"])
def test_multi_frame_files_are_refused_not_read_as_their_first_frame(tmp_path, capsys, suffix):
    src = tmp_path / f"pages{suffix}"
    first = Image.fromarray(_pixels())
    first.save(src, save_all=True, append_images=[Image.fromarray(_pixels(seed=1))],
               **({"lossless": True} if suffix == ".webp" else {}))
    with pytest.raises(BadImageError, match=f"pages{suffix}: .* file holding 2 images"):
        read_rgb(src)
    code = restore.main([str(src), str(tmp_path / "out.png"), "--workdir", str(tmp_path / "no-run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "holding 2 images" in err
    assert not (tmp_path / "out.png").exists()


def test_a_jpeg_with_mpo_preview_frames_reads_its_primary_image(tmp_path):
    src = tmp_path / "camera.jpg"
    primary = np.full((24, 32, 3), 200, np.uint8)
    Image.fromarray(primary).save(src, format="MPO", save_all=True, quality=95,
                                  append_images=[Image.fromarray(np.zeros((24, 32, 3), np.uint8))])
    assert Image.open(src).n_frames == 2
    assert np.abs(read_rgb(src).astype(int) - 200).max() <= 2  # JPEG rounding, not the black second frame


@pytest.mark.parametrize(("mode", "key", "message"), [
    ("RGB", (1, 2, 3), "transparent colour key \\(PNG tRNS\\)"),
    ("L", 5, "transparent colour key \\(PNG tRNS\\)"),
    ("P", 0, "palette image with transparency"),
])
def test_every_kind_of_transparency_is_refused_alike(tmp_path, mode, key, message):
    src = tmp_path / "keyed.png"
    image = Image.fromarray(_pixels())
    (image.convert(mode) if mode != "P" else image.quantize(16)).save(src, transparency=key)
    with pytest.raises(BadImageError, match=f"keyed.png: {message}; expected 8-bit RGB without transparency"):
        read_rgb(src, allow_gray=True)
