"""The README's CEA picture: the shipped model on a held-out photo, beside BM3D and the clean photo."""

import numpy as np
import pytest
from data_helpers import trained_run

from cea_jax.data import embedded
from cea_jax.pretrained import export
from cea_jax.pretrained.manifest import FOLDER_VARIABLE
from experiments.cea_default_model import figure

pytest.importorskip("bm3d")


def test_the_figure_shows_noisy_model_bm3d_and_clean_with_psnr(tmp_path, monkeypatch):
    workdir, _ = trained_run()
    assert export.main(["--workdir", str(workdir), "--name", "default", "--out", str(tmp_path)]) == 0
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path))
    monkeypatch.setattr(figure, "SIGMA", 50.0)  # stronger noise: BM3D well clear of the input
    shown = figure.panels()
    titles = [title for title, _ in shown]
    assert [t.split(":")[0] for t in titles] == ["noisy (σ=50)", "CEA 'default'", "BM3D (σ known)", "clean"]
    psnr = [float(t.split(": ")[1].removesuffix(" dB")) for t in titles[:3]]
    assert psnr[2] > psnr[0] + 5  # BM3D restores
    assert np.array_equal(shown[3][1], embedded.test_photo("astronaut"))
    with pytest.raises(ValueError, match="not a held-out photo"):
        embedded.test_photo("camera")
