"""python -m cea_jax.restore: a user's image in, a same-size restored PNG out."""

import numpy as np
import pytest
from PIL import Image

from cea_jax import restore
from cea_jax.data import embedded

from data_helpers import trained_run


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
