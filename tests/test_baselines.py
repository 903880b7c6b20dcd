"""Peer explainers (LIME, KernelSHAP, SHAP Partition, occlusion) on models whose exact
attributions are known; skipped only when the optional [compare] extra is missing."""

from types import SimpleNamespace

import numpy as np
import pytest

from bowlrp.evaluation.baselines import (
    BASELINES,
    compare_extra_available,
    explain_baseline,
    kernel_shap_map,
    lime_map,
    shap_partition_map,
    slic_segments,
)

needs_extra = pytest.mark.skipif(
    not compare_extra_available(), reason='lime/shap/scikit-image missing: pip install "bowlrp[compare]"'
)


class LinearImageModel:
    """``f(x) = sum_p w_p x_p``: the exact attributions of any fill are ``w * (x - fill)``."""

    def __init__(self, weights):
        self.weights = weights
        self.classifier_ = SimpleNamespace(
            task_and_sign=lambda x, target=None: (0, 1.0), target_label=lambda task, sign: 1
        )

    def forward_one(self, image):
        return SimpleNamespace(features=np.zeros(1))

    def decision_function(self, images):
        return np.array([float((np.asarray(im) * self.weights).sum()) for im in images])


def _scene(n=40):
    rng = np.random.default_rng(0)
    img = np.full((n, n), 0.2)
    img[5:18, 6:20] = 0.9
    img[24:36, 20:34] = 0.6
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)


@needs_extra
def test_kernel_shap_recovers_linear_model_exactly():
    img = _scene()
    w = np.zeros(img.shape)
    w[5:18, 6:20] = 1.0
    w[24:36, 20:34] = -0.5
    model = LinearImageModel(w)
    r = kernel_shap_map(model, img, 1, nsamples=200, n_segments=12)
    segments = slic_segments(img, 12)
    S = segments.max() + 1
    means = np.array([img[segments == s].mean() for s in range(S)])
    exact = np.array([(w * (img - means[segments]))[segments == s].sum() for s in range(S)])
    got = np.array([r.heatmap[segments == s].sum() for s in range(S)])
    # an additive model: KernelSHAP with enough coalitions returns its exact terms
    np.testing.assert_allclose(got, exact, atol=1e-6 * np.abs(exact).max())
    assert r.evaluations >= S and r.seconds > 0


@needs_extra
def test_lime_ranks_the_positive_region_first():
    img = _scene()
    w = np.zeros(img.shape)
    w[5:18, 6:20] = 1.0
    r = lime_map(LinearImageModel(w), img, 1, num_samples=150, n_segments=12)
    assert r.evaluations == 150
    inside = r.heatmap[5:18, 6:20].mean()
    assert inside > 0 and inside >= np.abs(r.heatmap[24:, :]).max()


@pytest.mark.slow  # shap compiles its partition tree code with Numba in every process
@needs_extra
def test_shap_partition_is_efficient():
    """Partition SHAP values add up to f(x) - f(everything blurred)."""
    import cv2

    img = _scene(32)
    rng = np.random.default_rng(1)
    w = rng.normal(size=img.shape)
    model = LinearImageModel(w)
    r = shap_partition_map(model, img, 1, max_evals=200, blur=9)
    blurred = cv2.blur(img[:, :, None].astype(np.float64), (9, 9))
    full = model.decision_function([img])[0] - model.decision_function([blurred])[0]
    assert r.heatmap.shape == img.shape
    assert r.heatmap.sum() == pytest.approx(full, rel=1e-6, abs=1e-9)
    assert 0 < r.evaluations <= 200 + 2


def test_occlusion_baseline_and_unknown_name(stripes_blobs):
    from bowlrp import DenseSIFT, RankMapping
    from bowlrp.classifier.svm import KernelSVC
    from bowlrp.pipeline import Pipeline

    train, y, test, _ = stripes_blobs
    p = Pipeline(
        [("s", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(8, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    ).fit(train[::4], y[::4])
    image = test[0][:27, :27]
    r = explain_baseline("occlusion-blur", p, image, 1, block=9)
    assert r.heatmap.shape == image.shape and r.evaluations == 10 and r.method == "occlusion-blur"
    assert "lime" in BASELINES
    with pytest.raises(ValueError, match="unknown baseline"):
        explain_baseline("anchors", p, image)


@pytest.mark.slow
@needs_extra
def test_evaluate_cli_runs_peers_and_reports_cost(tmp_path, stripes_blobs):
    import json
    import subprocess
    import sys

    import cv2

    from bowlrp import DenseSIFT, RankMapping
    from bowlrp.classifier.svm import KernelSVC
    from bowlrp.model_files import save
    from bowlrp.pipeline import Pipeline

    train, y, test, _ = stripes_blobs
    p = Pipeline(
        [("s", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(8, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    ).fit(train[::4], y[::4])
    save(p, tmp_path / "m.pkl")
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), (test[0][:36, :36] * 255).astype(np.uint8))
    cmd = [
        sys.executable,
        "-m",
        "bowlrp.evaluate",
        "--model",
        str(tmp_path / "m.pkl"),
        "--images",
        str(tmp_path / "imgs"),
        "--steps",
        "3",
        "--repeats",
        "1",
        "--target",
        "1",
        "--methods",
        "lrp-contribution,kernel-shap,lime",
        "--samples",
        "30",
        "--out",
        str(tmp_path / "ev"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "ev" / "curves.json").read_text())["methods"]
    assert set(summary) == {"lrp-contribution", "kernel-shap", "lime"}
    assert summary["lime"]["evaluations_per_image"] == 30
    assert summary["kernel-shap"]["seconds_per_image"] > 0
    assert "evaluations" in r.stdout
