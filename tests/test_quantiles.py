import numpy as np

from bowlrp import ColorQuantiles


def reference(img, center, radius, q):
    h, w = img.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w]
    dy, dx = rows - center[0], cols - center[1]
    disc = dx**2 + dy**2 <= radius**2 + 1e-9
    upper = disc & ((dy < 0) | ((dy == 0) & (dx <= 0)))
    lower = disc & ~upper
    chans = [img] if img.ndim == 2 else [img[..., c] for c in range(3)]
    out = []
    for ch in chans:
        out += list(np.quantile(ch[upper], q)) + list(np.quantile(ch[lower], q))
    return np.array(out)


def test_half_disc_quantiles_equal_numpy_reference():
    rng = np.random.default_rng(0)
    img = rng.random((40, 45, 3))
    cq = ColorQuantiles(radius=6.5, step=7)
    d = cq.describe(img)
    assert d.data.shape == (len(d), 54)
    q = np.asarray(cq.quantiles)
    for i in range(0, len(d), 3):
        np.testing.assert_allclose(d.data[i], reference(img, d.centers[i], 6.5, q), atol=1e-6)
    assert np.all(d.shapes == 2) and np.all(d.half_widths == 6.5)


def test_grey_mode_and_clipped_borders():
    rng = np.random.default_rng(1)
    img = rng.random((30, 30))
    cq = ColorQuantiles(radius=5, step=4, color="grey", quantiles=[0.25, 0.5])
    d = cq.describe(img)
    assert d.data.shape[1] == 4
    np.testing.assert_allclose(d.data[0], reference(img, d.centers[0], 5, [0.25, 0.5]), atol=1e-6)
    assert d.support_sizes().min() > 0
