"""Each degradation recipe moves the image the way its physics says it should."""

import numpy as np
import pytest

from cea_jax.data import degrade, embedded


@pytest.fixture(scope="module")
def photo():
    """A mid-tone textured photo crop (values well below the airlight, above black)."""
    img = embedded.train_photos()[embedded.TRAIN_PHOTOS.index("motorcycle_left")][0][:96, :96].astype(np.float32)
    return (48 + img * (160 / 255)).astype(np.uint8)


def rng(seed=0):
    return np.random.default_rng(seed)


def gradient_energy(img):
    f = img.astype(np.float64)
    return np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean()


def test_uint8_noise_has_the_requested_sigma(photo):
    noisy = degrade.add_uint8_noise(photo, 25, rng())
    assert noisy.dtype == np.uint8
    residual = noisy.astype(np.float64) - photo
    # Truncation to uint8 biases each sample down by ~0.5; clipping is rare for mid tones.
    assert residual.std() == pytest.approx(25, rel=0.05)
    assert residual.mean() == pytest.approx(-0.5, abs=0.5)


def test_rain_only_adds_light(photo):
    rainy = degrade.apply("rain", photo, None, rng())
    assert (rainy.astype(int) >= photo.astype(int) - 1).all()
    assert rainy.mean() > photo.mean() + 1


def test_haze_brightens_more_where_depth_is_large(photo):
    depth = np.repeat(np.linspace(0, 1, photo.shape[1], dtype=np.float32)[None], photo.shape[0], axis=0)
    hazy = degrade.apply("haze", photo, depth, rng()).astype(np.float64)
    gain = hazy - photo
    near, far = gain[:, :20].mean(), gain[:, -20:].mean()
    assert far > near + 20
    assert hazy[:, -20:].std() < photo[:, -20:].astype(np.float64).std()  # contrast is lost far away


def test_motion_blur_removes_detail_and_keeps_mean(photo):
    blurred = degrade.apply("blur", photo, None, rng())
    assert gradient_energy(blurred) < 0.8 * gradient_energy(photo)
    assert blurred.mean() == pytest.approx(photo.mean(), abs=2)


def test_trajectory_kernel_is_a_normalised_psf():
    kernel = degrade.trajectory_kernel(15, rng(3))
    assert kernel.shape == (15, 15)
    assert (kernel >= 0).all() and kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert (kernel > 0).sum() > 5  # a path, not a point


def test_low_light_darkens(photo):
    dark = degrade.apply("low", photo, None, rng())
    assert dark.mean() < 0.75 * photo.mean()


def test_snow_whitens(photo):
    snowy = degrade.apply("snow", photo, None, rng())
    assert (snowy.astype(int) >= photo.astype(int) - 1).all()
    assert snowy.mean() > photo.mean() + 1


def test_composites_apply_haze_after_low_light(photo):
    depth = degrade.synthetic_depth(photo.shape[:2], rng(1))
    low = degrade.apply("low", photo, depth, rng(2)).mean()
    low_haze = degrade.apply("low_haze", photo, depth, rng(2)).mean()
    # Haze last lifts the darkened scene towards the airlight; the other order would stay dark.
    assert low_haze > low + 20
    for category in degrade.CDD11_CATEGORIES:
        out = degrade.apply(category, photo, depth, rng(4))
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - photo).mean() > 2


def test_depth_maps_are_normalised():
    depth = degrade.synthetic_depth((40, 60), rng())
    assert depth.shape == (40, 60) and depth.min() == 0 and depth.max() == pytest.approx(1)
    disparity = np.array([[1.0, 2.0], [np.inf, 4.0]], np.float32)
    from_disp = degrade.disparity_to_depth(np.kron(disparity, np.ones((4, 4), np.float32)))
    assert from_disp.min() == 0 and from_disp.max() == pytest.approx(1)
    with pytest.raises(ValueError, match="no valid"):
        degrade.disparity_to_depth(np.zeros((4, 4)))


def test_spatially_mixed_regions_carry_their_own_degradation(photo):
    depth = degrade.synthetic_depth(photo.shape[:2], rng())
    mixed, labels, full = degrade.spatially_mixed(photo, ("noise", "low", "haze"), depth, rng(5))
    assert full.shape == (3, *photo.shape)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    region_mean = [mixed[labels == k].astype(float).mean() - photo[labels == k].mean() for k in range(3)]
    assert abs(region_mean[0]) < 3  # noise: zero-mean
    assert region_mean[1] < -10  # low light: darker
    assert region_mean[2] > 10  # haze: brighter
    again, _, _ = degrade.spatially_mixed(photo, ("noise", "low", "haze"), depth, rng(5))
    np.testing.assert_array_equal(mixed, again)


def test_unknown_recipe_is_named(photo):
    with pytest.raises(ValueError, match="unknown degradation 'fog'"):
        degrade.apply("fog", photo, None, rng())
