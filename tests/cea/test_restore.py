"""python -m cea_jax.restore: a user's image in, a same-size restored PNG out (tiled when large); 8-bit only."""

import logging
import struct
import zlib

import numpy as np
import pytest
from data_helpers import SMALL_TRAIN, trained_run
from PIL import Image

from cea_jax import restore
from cea_jax.data import embedded
from cea_jax.data.degrade import to_uint8
from cea_jax.data.io import BadImageError, read_rgb
from cea_jax.inference import restore_batch, restore_tiled
from cea_jax.workdir import load_params


def test_restore_keeps_the_size_of_an_odd_sized_image(tmp_path, capsys):
    workdir, _ = trained_run()
    src = tmp_path / "in.png"
    # Pads to the 128x128 of the evaluation tiles, so the compiled forward is reused.
    Image.fromarray(embedded.test_tiles()[0][:115, :121]).save(src)
    code = restore.main([str(src), str(tmp_path / "out.png"), "--workdir", str(workdir),
                         "--maps", str(tmp_path / "maps.png")])
    assert code == 0 and "wrote" in capsys.readouterr().out
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (115, 121, 3) and out.dtype == np.uint8
    assert Image.open(tmp_path / "maps.png").size[0] > 100


def test_restore_names_the_checkpoint_it_used_and_logs_no_read_only_warnings(tmp_path, capsys, caplog):
    workdir, _ = trained_run()
    src = _save(tmp_path / "in.png", embedded.test_tiles()[0])
    with caplog.at_level(logging.INFO):
        code = restore.main([str(src), str(tmp_path / "out.png"), "--workdir", str(workdir)])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines() == [f"using checkpoint step {SMALL_TRAIN.steps} of {workdir}",
                                              f"wrote {tmp_path / 'out.png'}"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in warnings if "read only" in m or "read_only" in m], warnings


def test_unreadable_input_is_a_clear_error(tmp_path, capsys):
    workdir, _ = trained_run()
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    code = restore.main([str(bad), str(tmp_path / "out.png"), "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert code == 2 and "photo.jpg: cannot read image" in err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("pixels_over_limit", [1.5, 3.0])  # PIL warns between 1x and 2x its limit, raises above
def test_decompression_bomb_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, pixels_over_limit):
    src = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(src)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(40 * 40 / pixels_over_limit))
    code = restore.main([str(src), str(tmp_path / "out.png"), "--workdir", str(tmp_path / "no-run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "bomb.png: image larger than" in err  # the image is checked first: no word about the missing run
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("workdir", ["a-file", "missing"])
def test_bad_workdir_is_one_line(tmp_path, capsys, workdir):
    src = tmp_path / "in.png"
    Image.fromarray(embedded.test_tiles()[0][:32, :32]).save(src)
    (tmp_path / "a-file").write_text("")
    code = restore.main([str(src), str(tmp_path / "out.png"), "--workdir", str(tmp_path / workdir)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "config.json: not found" in err


def _png16(path, rgb: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one; it reads one as 8-bit RGB)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("kind", ["rgb", "gray", "tiff", "tiff_lzw"])
def test_16_bit_images_are_refused_in_one_line_not_cut_to_8_bits(tmp_path, capsys, kind):
    src = tmp_path / ("deep.tif" if kind.startswith("tiff") else "deep.png")
    pixels = np.random.default_rng(0).integers(0, 2 ** 16, (20, 24, 3)).astype(np.uint16)
    if kind == "rgb":
        _png16(src, pixels)
        assert Image.open(src).mode == "RGB"  # what PIL alone would hand on: 8 bits per channel
    else:
        Image.fromarray(pixels[..., 0]).save(src, **({"compression": kind} if kind == "tiff_lzw" else {}))
    with pytest.raises(BadImageError, match=f"{src.name}: 16-bit image; expected 8-bit RGB"):
        read_rgb(src, allow_gray=True)
    code = restore.main([str(src), str(tmp_path / "out.png"), "--workdir", str(tmp_path / "no-run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{src.name}: 16-bit image; expected 8-bit RGB" in err
    assert not (tmp_path / "out.png").exists()


def test_a_tiled_restore_is_close_to_the_whole_image_restore(tmp_path, capsys):
    workdir, _ = trained_run()
    config, params, _ = load_params(str(workdir))
    image = embedded.test_tiles()[0]  # 128x128: restored whole, as the evaluation does
    whole = restore_batch(config, params, image[None])[0][0]
    tiled = restore_tiled(config, params, image, tile=64, overlap=16)  # 3x3 windows of 64x64
    # Measured 40.4 dB and 9.7/255 (48/255 without overlap): the windows see less context than
    # the whole image (the backbone's channel attention pools over all pixels), so close, not equal.
    gap_psnr = 10 * np.log10(1 / np.mean((tiled - whole) ** 2))
    assert gap_psnr > 37 and np.abs(tiled - whole).max() < 20 / 255, (gap_psnr, np.abs(tiled - whole).max() * 255)
    # The command line tiles any image over --tile x --tile pixels, and writes that result.
    code = restore.main([str(_save(tmp_path / "in.png", image)), str(tmp_path / "out.png"), "--workdir", str(workdir),
                         "--tile", "64", "--tile-overlap", "16"])
    assert code == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), to_uint8(tiled))


def _save(path, image):
    Image.fromarray(image).save(path)
    return path


@pytest.mark.parametrize(("flags", "message"), [
    (["--tile", "64", "--maps", "m.png"], "--maps needs an image restored whole (at most 64x64 pixels, see --tile)"),
    (["--tile", "100"], "--tile must be a multiple of 16 and >= 64, got 100"),
    (["--tile-overlap", "512"], "--tile-overlap must be in [0, 512), got 512"),
])
def test_tiling_flags_are_checked_before_the_model_loads(tmp_path, capsys, flags, message):
    src = _save(tmp_path / "in.png", np.zeros((80, 80, 3), np.uint8))
    code = restore.main([str(src), str(tmp_path / "out.png"), "--workdir", str(tmp_path / "no-run"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_the_input_is_not_written_over_without_overwrite(tmp_path, capsys, spelling):
    src = _save(tmp_path / "photo.png", np.full((40, 40, 3), 7, np.uint8))
    before = src.read_bytes()
    out = {"same": src, "dotted": tmp_path / "sub" / ".." / "photo.png", "symlink": tmp_path / "link.png",
           "hardlink": tmp_path / "hard.png"}[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        out.symlink_to(src)
    elif spelling == "hardlink":
        out.hardlink_to(src)
    for args in ([str(src), str(out)], [str(src), str(tmp_path / "out.png"), "--maps", str(out)]):
        code = restore.main([*args, "--workdir", str(tmp_path / "no-run")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"{out} is the input image {src}: it would be written over; give another file, or add --overwrite" in err
    assert src.read_bytes() == before and not (tmp_path / "out.png").exists()


def test_maps_over_the_output_image_are_refused(tmp_path, capsys):
    src = _save(tmp_path / "in.png", np.zeros((40, 40, 3), np.uint8))
    out = tmp_path / "out.png"
    code = restore.main([str(src), str(out), "--maps", str(tmp_path / "." / "out.png"), "--overwrite",
                         "--workdir", str(tmp_path / "no-run")])
    err = capsys.readouterr().err
    assert code == 2 and f"--maps {tmp_path / '.' / 'out.png'} is the output image {out}" in err


@pytest.mark.parametrize("name", ["out.gif", "out.PNG.txt", "out"])
def test_an_output_suffix_naming_no_written_format_is_refused_before_the_model_loads(tmp_path, capsys, name):
    src = _save(tmp_path / "in.png", np.zeros((40, 40, 3), np.uint8))
    code = restore.main([str(src), str(tmp_path / name), "--workdir", str(tmp_path / "no-run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{name}: cannot write an image with the suffix" in err
    assert "expected one of .png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp" in err
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(("name", "kind", "lossless"), [
    ("out.jpg", "JPEG", False), ("out.JPEG", "JPEG", False), ("out.webp", "WEBP", True),
    ("out.tif", "TIFF", True), ("out.bmp", "BMP", True), ("out.png", "PNG", True),
])
def test_the_output_is_written_in_the_format_its_suffix_names(tmp_path, capsys, name, kind, lossless):
    workdir, _ = trained_run()
    src = _save(tmp_path / "in.png", embedded.test_tiles()[0][:64, :64])
    code = restore.main([str(src), str(tmp_path / name), "--workdir", str(workdir)])
    assert code == 0, capsys.readouterr().err
    written = Image.open(tmp_path / name)
    assert written.format == kind and written.size == (64, 64)
    # The lossless formats hold the same pixels; JPEG at quality 95 stays within a few levels of them.
    config, params, _ = load_params(str(workdir))
    expected = to_uint8(restore_batch(config, params, read_rgb(src)[None])[0][0])
    gap = np.abs(np.asarray(written.convert("RGB"), int) - expected).mean()
    assert gap == 0 if lossless else gap < 3, gap


def test_overwrite_restores_an_image_in_place(tmp_path, capsys):
    workdir, _ = trained_run()
    src = _save(tmp_path / "photo.jpg", embedded.test_tiles()[0][:64, :64])
    code = restore.main([str(src), str(src), "--overwrite", "--workdir", str(workdir)])
    assert code == 0, capsys.readouterr().err
    assert Image.open(src).format == "JPEG" and sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]
