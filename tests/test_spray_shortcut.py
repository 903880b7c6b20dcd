"""The planted-shortcut data set: BoW and Fisher-vector models learn the stamp, LRP shows it,
SpRAy finds the stamped images as one cluster behind an eigengap.

Default run: BoW on seeds 0 and 1, FV on seed 0, and bowlrp-explain -> bowlrp-spray on real
files. Slow (``-m slow``): ten seeds per model, the same assertions (numbers in
``experiments/shortcut_spray.py`` and the README's SpRAy section).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bowlrp import DenseSIFT, FisherVector, GMMVocabulary, HardAssignment, KMeansVocabulary
from bowlrp.classifier.svm import KernelSVC
from bowlrp.datasets.shortcut import STAMP_SHAPE, add_artefact, generate, save_samples
from bowlrp.pipeline import Pipeline
from bowlrp.spray.spectral import SpRAy

N_TRAIN, N_TEST = 60, 40  # per class; half of class 1 is stamped


def make_model(kind, seed):
    sift = DenseSIFT(bin_sizes=[4], steps=4, backend="opencv")
    if kind == "bow":
        return Pipeline(
            [("sift", sift, HardAssignment(KMeansVocabulary(32, random_state=seed)))],
            KernelSVC("hik", C=1.0),
            random_state=seed,
        )
    gmm = GMMVocabulary(8, pca_components=16, max_descriptors=5000, random_state=seed)
    return Pipeline([("fv", sift, FisherVector(gmm))], KernelSVC("linear"), random_state=seed)


def study(kind, seed):
    """Train on one seed, test on another; everything the assertions need."""
    train = generate(seed, N_TRAIN, 0.5, signal=0.8)
    test = generate(seed + 1000, N_TEST, 0.5, signal=0.8)
    model = make_model(kind, seed).fit([s.image for s in train], [s.label for s in train])
    stamped = [s for s in test if s.has_artefact]
    negatives = [s for s in test if s.label == 0]
    positives = [s for s in test if s.label == 1]
    maps = np.array([e.heatmap for e in model.explain([s.image for s in positives], target=1)])
    positive = np.clip(maps, 0, None)
    share = np.array([p[s.artefact_mask()].sum() / p.sum() for s, p in zip(positives, positive)])
    is_stamped = np.array([s.has_artefact for s in positives])
    sp = SpRAy(random_state=seed, embedding=False).fit(maps)
    best = np.bincount(sp.labels_[is_stamped]).argmax()
    members = sp.labels_ == best
    return {
        "model": model,
        "acc_with": (model.predict([s.image for s in stamped]) == 1).mean(),
        "acc_without": (model.predict([s.clean for s in stamped]) == 1).mean(),
        "fp_before": (model.predict([s.image for s in negatives]) == 1).mean(),
        "fp_after": (model.predict([add_artefact(s.image, s.box) for s in negatives]) == 1).mean(),
        "share_stamped": share[is_stamped].mean(),
        "share_clean": share[~is_stamped].mean(),
        "area": positives[0].artefact_mask().mean(),
        "purity": is_stamped[members].mean(),
        "recall": members[is_stamped].mean(),
        "spray": sp,
        "test": test,
    }


def check_study(r):
    # the model relies on the stamp ...
    assert r["acc_with"] >= 0.8
    assert r["acc_with"] - r["acc_without"] >= 0.3, (r["acc_with"], r["acc_without"])
    assert r["fp_after"] - r["fp_before"] >= 0.4, (r["fp_before"], r["fp_after"])
    # ... LRP puts its positive relevance there: at least twice the box's share of the image
    # (< 10 %) and twice what falls into the same box on unstamped images ...
    assert r["area"] < 0.1
    assert r["share_stamped"] >= 2 * r["area"], r["share_stamped"]
    assert r["share_stamped"] >= 2 * r["share_clean"], (r["share_stamped"], r["share_clean"])
    # ... and SpRAy finds the stamped images as one cluster behind the eigengap
    sp = r["spray"]
    assert sp.n_clusters_ == 2, sp.eigenvalues_
    assert r["purity"] >= 0.8 and r["recall"] >= 0.8, (r["purity"], r["recall"])


_CACHE = {}


def cached_study(kind, seed):
    if (kind, seed) not in _CACHE:
        _CACHE[(kind, seed)] = study(kind, seed)
    return _CACHE[(kind, seed)]


def test_generator_is_reproducible_and_plants_the_stamp_where_it_says():
    a, b = generate(3, 10, 0.4), generate(3, 10, 0.4)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert [s.label for s in a] == [0] * 10 + [1] * 10
    assert sum(s.has_artefact for s in a) == 4 and not any(s.has_artefact for s in a[:10])
    for s in a:
        r0, c0, r1, c1 = s.box
        assert (r1 - r0, c1 - c0) == STAMP_SHAPE and 0 <= r0 and r1 <= 64 and 0 <= c0 and c1 <= 64
        outside = ~s.artefact_mask()
        np.testing.assert_array_equal(s.image[outside], s.clean[outside])
        assert s.has_artefact == (not np.array_equal(s.image, s.clean))
        assert s.image.min() >= 0 and s.image.max() <= 1
    # the share changes which images are stamped, not the images themselves
    c = generate(3, 10, 0.0)
    assert all(np.array_equal(x.clean, y.clean) for x, y in zip(a, c))
    with pytest.raises(ValueError, match="artefact_share"):
        generate(0, 2, 1.5)


def test_save_samples(tmp_path):
    samples = generate(0, 3, 1.0)
    paths = save_samples(samples, tmp_path, "train")
    assert len(paths) == 6 and all(p.is_file() for p in paths)
    lines = (tmp_path / "train_labels.csv").read_text().splitlines()
    assert lines[0] == "file,label,artefact,box" and lines[4].startswith("train_0003.png,1,1,")


@pytest.mark.parametrize("kind,seed", [("bow", 0), ("bow", 1), ("fv", 0)])
def test_model_learns_the_shortcut_and_spray_finds_it(kind, seed):
    check_study(cached_study(kind, seed))


def test_explain_then_spray_on_real_files(tmp_path):
    """bowlrp-explain writes the heatmaps of class-1 test images; bowlrp-spray separates the stamped."""
    from bowlrp.cli.spray import main
    from bowlrp.model_files import save

    r = cached_study("bow", 0)
    positives = [s for s in r["test"] if s.label == 1]
    save_samples(positives, tmp_path / "images" / "class1", "test")
    save(r["model"], tmp_path / "model.skops")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bowlrp.explain",
            "--image",
            str(tmp_path / "images" / "class1"),
            "--model",
            str(tmp_path / "model.skops"),
            "--target",
            "1",
            "--out",
            str(tmp_path / "heat" / "class1"),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        main(
            [
                "--heatmaps",
                str(tmp_path / "heat"),
                "--images",
                str(tmp_path / "images"),
                "--out",
                str(tmp_path / "report"),
                "--quiet",
            ]
        )
        == 0
    )
    spec = json.loads((tmp_path / "report" / "spectrum.json").read_text())
    assert spec["classes"][0]["class"] == "1" and spec["classes"][0]["n_clusters"] == 2
    import csv

    with open(tmp_path / "report" / "clusters.csv") as fh:
        rows = list(csv.DictReader(fh))
    stamped = {f"test_{i:04d}" for i, s in enumerate(positives) if s.has_artefact}
    is_stamped = np.array([os.path.splitext(os.path.basename(row["image"]))[0] in stamped for row in rows])
    labels = np.array([int(row["cluster"]) for row in rows])
    best = np.bincount(labels[is_stamped]).argmax()
    assert is_stamped[labels == best].mean() >= 0.8 and (labels[is_stamped] == best).mean() >= 0.8


# Measured with experiments/shortcut_spray.py (normalize=None): these seeds miss a SpRAy target.
# ("fv", 5) missed (eigengap k=3, purity 1.0, recall 0.9) until the session of 2026-12-02
# (third): with its numerical changes (keypoint-only orientation histograms, contiguous PCA
# components, vectorised Fisher sums) this seed finds the shortcut.
_KNOWN_MISSES = {
    ("bow", 7): "eigengap k=5, recall 0.35; false positives rise by 0.30 only",
    ("bow", 9): "eigengap k=3, recall 0.75",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,seed",
    [
        pytest.param(k, s, marks=pytest.mark.xfail(strict=True, reason=_KNOWN_MISSES[(k, s)]))
        if (k, s) in _KNOWN_MISSES
        else (k, s)
        for k in ("bow", "fv")
        for s in range(10)
    ],
)
def test_shortcut_over_ten_seeds(kind, seed):
    check_study(cached_study(kind, seed))
