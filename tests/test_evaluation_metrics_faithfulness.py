"""Faithfulness metrics (pixel flipping, ROAD, IROF, faithfulness correlation, MoRF / LeRF)
against plain-NumPy references: the perturbed images built by hand and scored by full
forward passes; the imputation against a dense solve of its equations."""

import numpy as np
import pytest

from bowlrp.evaluation import (
    IncrementalImage,
    area_between,
    explain_maps,
    faithfulness_correlation,
    irof,
    pixel_flipping,
    region_morf_lerf,
    region_perturbation,
    road,
    set_pixels,
)
from bowlrp.evaluation.baselines import slic_segments
from bowlrp.evaluation.faithfulness import baseline_values
from bowlrp.evaluation.road import NEIGHBOURS, linear_imputation, noisy_linear_imputation
from bowlrp.evaluation.scattered import evaluate_pixels, touched, touched_share

from .conftest import blobs, small_hik_model, stripes


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    model = small_hik_model(rng)
    images = [blobs(rng, 40), stripes(rng, 40)]
    return model, images, explain_maps(model, images, "lrp")


def f(model, image, target):
    """The sign-adjusted score of ``target``, by a full forward pass."""
    F = np.asarray(model.decision_function([image])).reshape(-1)
    task, sign = model.classifier_.task_and_sign(None, target)
    return sign * F[task if F.size > 1 else 0]


def test_touched_equals_a_loop_over_descriptors_and_pixels():
    rng = np.random.default_rng(1)
    bounds = np.sort(rng.uniform(-5, 25, (2, 2, 60)), axis=1).reshape(4, 60)  # lo_y, hi_y, lo_x, hi_x
    mask = rng.random((20, 22)) < 0.03
    pixels = np.argwhere(mask)
    expected = [
        l
        for l in range(60)
        if any(bounds[0, l] <= r <= bounds[1, l] and bounds[2, l] <= c <= bounds[3, l] for r, c in pixels)
    ]
    np.testing.assert_array_equal(touched(bounds, mask), expected)


def test_set_pixels_equals_a_full_forward_pass(setup):
    model, images, _ = setup
    rng = np.random.default_rng(2)
    state = IncrementalImage(model, images[0])
    explicit = images[0].copy()
    for _ in range(4):
        mask = rng.random(explicit.shape) < 0.05
        values = rng.random(mask.sum())
        trial = explicit.copy()
        trial[mask] = values
        assert set_pixels(state, mask, values, commit=False) == pytest.approx(
            f(model, trial, state.target), rel=1e-9
        )
        np.testing.assert_array_equal(state.image, explicit)  # not committed
        explicit = trial
        assert set_pixels(state, mask, explicit) == pytest.approx(f(model, explicit, state.target), rel=1e-9)
    assert state.score == pytest.approx(state.full_score(), rel=1e-9)
    # an uncommitted change touching most descriptors is scored by a full pass: the same number
    mask = rng.random(explicit.shape) < 0.5
    assert touched_share(state, mask) > 0.5
    piecewise = evaluate_pixels(state, mask, 0.3, False, True, max_share=1.0)
    whole = evaluate_pixels(state, mask, 0.3, False, True, max_share=0.5)
    trial = explicit.copy()
    trial[mask] = 0.3
    assert piecewise == pytest.approx(whole, rel=1e-9) and whole == pytest.approx(
        f(model, trial, state.target)
    )
    np.testing.assert_array_equal(state.image, explicit)


def dense_imputation(image, mask):
    """The imputation's equations written out one pixel at a time and solved densely."""
    H, W = mask.shape
    unknown = [(r, c) for r in range(H) for c in range(W) if mask[r, c]]
    index = {p: i for i, p in enumerate(unknown)}
    A = np.zeros((len(unknown), len(unknown)))
    b = np.zeros(len(unknown))
    for i, (r, c) in enumerate(unknown):
        for dr, dc, w in NEIGHBOURS:
            q = (r + dr, c + dc)
            if 0 <= q[0] < H and 0 <= q[1] < W:
                A[i, i] += w
                if q in index:
                    A[i, index[q]] -= w
                else:
                    b[i] += w * image[q]
    return np.linalg.solve(A, b)


def test_linear_imputation_equals_a_dense_solve_and_is_a_neighbour_mean():
    rng = np.random.default_rng(3)
    image = rng.random((9, 11))
    mask = rng.random(image.shape) < 0.5
    fill = linear_imputation(image, mask)
    np.testing.assert_allclose(fill, dense_imputation(image, mask), rtol=1e-10)
    out = image.copy()
    out[mask] = fill
    r, c = np.argwhere(mask)[0]  # each removed pixel is the weighted mean of its neighbours
    near = [(w, out[r + dr, c + dc]) for dr, dc, w in NEIGHBOURS if 0 <= r + dr < 9 and 0 <= c + dc < 11]
    assert out[r, c] == pytest.approx(sum(w * v for w, v in near) / sum(w for w, _ in near))
    noisy = noisy_linear_imputation(image, mask, 0.01, np.random.default_rng(0))
    np.testing.assert_array_equal(noisy[~mask], image[~mask])
    assert 0 < np.abs(noisy[mask] - fill).max() < 0.06
    with pytest.raises(ValueError, match="every pixel"):
        linear_imputation(image, np.ones(image.shape, bool))


def test_pixel_flipping_equals_explicit_images(setup):
    model, images, maps = setup
    res = {
        o: pixel_flipping(model, images, maps=maps, order=o, steps=4, fraction=0.4, baseline=0.1)
        for o in ("morf", "lerf")
    }
    for i, (image, heat) in enumerate(zip(images, maps)):
        target = model.predict([image])[0]
        for o, r in res.items():
            order = np.argsort(-heat.ravel() if o == "morf" else heat.ravel(), kind="stable")
            x = image.copy().ravel()
            curve = [f(model, image, target)]
            for k in range(4):
                x[order[k * 160 : (k + 1) * 160]] = 0.1
                curve.append(f(model, x.reshape(image.shape), target))
            np.testing.assert_allclose(r.curves[i], curve, rtol=1e-9)
            area = sum((curve[k] + curve[k + 1]) / 2 * 0.1 for k in range(4)) / 0.4
            assert r.values[i] == pytest.approx(area, rel=1e-9)
    assert not res["morf"].higher_is_better and res["lerf"].higher_is_better
    between = area_between(res["morf"], res["lerf"])
    np.testing.assert_allclose(between.values, res["lerf"].values - res["morf"].values)


def test_road_equals_explicit_imputed_images(setup):
    model, images, maps = setup
    fractions = (0.2, 0.5)
    for order in ("morf", "lerf"):
        r = road(model, images, maps=maps, order=order, fractions=fractions, noise=0.0)
        full = road(model, images, maps=maps, order=order, fractions=fractions, noise=0.0, incremental=False)
        np.testing.assert_allclose(r.curves, full.curves, rtol=1e-9)
        for i, (image, heat) in enumerate(zip(images, maps)):
            target = model.predict([image])[0]
            rank = np.argsort(-heat.ravel() if order == "morf" else heat.ravel(), kind="stable")
            curve = [f(model, image, target)]
            for p in fractions:
                mask = np.zeros(image.size, bool)
                mask[rank[: int(round(p * image.size))]] = True
                mask = mask.reshape(image.shape)
                x = image.copy()
                x[mask] = np.clip(dense_imputation(image, mask), 0, 1)
                curve.append(f(model, x, target))
            np.testing.assert_allclose(r.curves[i], curve, rtol=1e-8)
            xs = np.array([0.0, *fractions])
            assert r.values[i] == pytest.approx(np.trapezoid(curve, xs) / 0.5, rel=1e-9)
        assert r.params["accuracy"] == list((r.curves[:, 1:] > 0).mean(axis=0))
        assert r.higher_is_better == (order == "lerf") and r.name == f"road_{order}"


def test_irof_equals_explicit_images(setup):
    model, images, maps = setup
    r = irof(model, images, maps=maps, n_segments=12, baseline=0.0)
    for i, (image, heat) in enumerate(zip(images, maps)):
        target = model.predict([image])[0]
        seg = slic_segments(image, 12)
        S = seg.max() + 1
        means = [heat[seg == s].mean() for s in range(S)]
        x = image.copy()
        curve = [f(model, image, target)]
        for s in np.argsort(-np.array(means), kind="stable"):
            x[seg == s] = 0.0
            curve.append(f(model, x, target))
        curve = np.array(curve)
        if curve[0] <= 0:
            assert np.isnan(r.values[i])
            continue
        ratio = curve / curve[0]
        expected = 1 - sum((ratio[k] + ratio[k + 1]) / 2 for k in range(S)) / S
        assert r.values[i] == pytest.approx(expected, rel=1e-9)
        np.testing.assert_allclose(r.curves[i, : S + 1], ratio, rtol=1e-9)
    assert r.n >= 1 and r.higher_is_better


def test_faithfulness_correlation_equals_explicit_images(setup):
    model, images, maps = setup
    r = faithfulness_correlation(model, images, maps=maps, runs=6, subset_size=40, baseline="uniform", seed=5)
    seeds = np.random.SeedSequence(5).spawn(len(images))
    for i, (image, heat) in enumerate(zip(images, maps)):
        target = model.predict([image])[0]
        rng = np.random.default_rng(seeds[i])
        sums, drops = [], []
        for _ in range(6):
            chosen = np.sort(rng.choice(image.size, 40, replace=False))
            fill = baseline_values("uniform", image, 40, rng)
            x = image.copy().ravel()
            x[chosen] = fill
            sums.append(heat.ravel()[chosen].sum())
            drops.append(f(model, image, target) - f(model, x.reshape(image.shape), target))
        a, d = np.array(sums) - np.mean(sums), np.array(drops) - np.mean(drops)
        np.testing.assert_allclose(r.curves[i], [sums, drops], rtol=1e-9, atol=1e-12)
        if np.abs(d).max() < 1e-12:  # the score did not move: no correlation to speak of
            assert np.isnan(r.values[i])
        else:
            assert r.values[i] == pytest.approx(
                (a * d).sum() / np.sqrt((a * a).sum() * (d * d).sum()), rel=1e-8
            )
    assert r.n >= 1 and r.higher_is_better and r.curves.shape == (2, 2, 6)


def test_region_morf_lerf_is_region_perturbation_and_the_area_between(setup):
    model, images, maps = setup
    res = region_morf_lerf(model, images, maps=maps, block=8, steps=6, repeats=2, seed=3)
    ref = region_perturbation(model, images, maps, ("morf", "lerf"), 8, 6, 2, "uniform", 3)
    for o in ("morf", "lerf"):
        f0 = ref.curves[o][:, :, :1]
        np.testing.assert_allclose(
            res[f"aopc_{o}"].values, (f0 - ref.curves[o]).mean(axis=(1, 2)), rtol=1e-12
        )
    np.testing.assert_allclose(
        res["aopc_area_between"].values, res["aopc_morf"].values - res["aopc_lerf"].values, rtol=1e-12
    )
    assert res["aopc_morf"].higher_is_better and not res["aopc_lerf"].higher_is_better
    with pytest.raises(ValueError, match="_lerf"):
        area_between(res["aopc_morf"], res["aopc_morf"])


def test_a_callable_explainer_is_evaluated_like_a_named_one(setup):
    model, images, maps = setup
    calls = []

    def lrp_again(m, ims, targets):
        calls.append(list(targets))
        return (
            [e.heatmap for e in m.explain(ims, targets[0])]
            if len(set(targets)) == 1
            else explain_maps(m, ims, "lrp")
        )

    by_name = road(model, images, "lrp", fractions=(0.3,), noise=0.0)
    by_callable = road(model, images, lrp_again, fractions=(0.3,), noise=0.0)
    np.testing.assert_allclose(by_callable.values, by_name.values, rtol=1e-12)
    assert calls == [list(model.predict(images))] and by_callable.method == "lrp_again"
