import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bowlrp import DenseSIFT, FisherVector, GMMVocabulary, HardAssignment, RankMapping
from bowlrp.classifier.svm import KernelSVC
from bowlrp.evaluation import (
    AnnotationError,
    IncrementalImage,
    aopc,
    block_grid,
    block_scores,
    context_ratio,
    context_ratios,
    descriptor_replacement,
    occlusion_map,
    order_blocks,
    perturbation_curve,
    read_voc_annotation,
    region_perturbation,
)
from bowlrp.evaluation.perturbation import make_perturbation
from bowlrp.model_files import save
from bowlrp.pipeline import Pipeline

from .conftest import blobs, stripes

ENCODERS = {
    "rank": lambda py: RankMapping(16, pyramid=py, random_state=0),
    "hard": lambda py: HardAssignment(16, pyramid=py, random_state=0),
    "fisher": lambda py: FisherVector(
        GMMVocabulary(4, pca_components=12, random_state=0), parts=("pi", "mu", "sigma"), pyramid=py
    ),
}


@pytest.fixture(scope="module")
def train(stripes_blobs):
    return stripes_blobs[0], stripes_blobs[1]


def _pipeline(kind, pyramid, train, rotate=True):
    return Pipeline(
        [
            (
                "s",
                DenseSIFT(bin_sizes=[4, 6], steps=3, backend="opencv", rotate=rotate),
                ENCODERS[kind](pyramid),
            )
        ],
        KernelSVC("linear" if kind == "fisher" else "hik"),
        random_state=0,
    ).fit(*train)


@pytest.mark.parametrize("kind", sorted(ENCODERS))
@pytest.mark.parametrize("pyramid", [((1, 1),), ((1, 1), (2, 2), (3, 1))])
def test_incremental_equals_full_recomputation_over_a_whole_curve(kind, pyramid, train):
    p = _pipeline(kind, pyramid, train)
    rng = np.random.default_rng(1)
    image = np.hstack([stripes(rng, 72)[:, :36], blobs(rng, 72)[:, 36:]])
    heat = p.explain([image], target=1)[0].heatmap
    blocks = block_grid(image.shape, 9)
    order = order_blocks(block_scores(heat, blocks), "morf", rng)
    fast = perturbation_curve(
        p,
        image,
        order,
        blocks,
        30,
        make_perturbation("uniform"),
        np.random.default_rng(7),
        target=1,
        incremental=True,
    )
    slow = perturbation_curve(
        p,
        image,
        order,
        blocks,
        30,
        make_perturbation("uniform"),
        np.random.default_rng(7),
        target=1,
        incremental=False,
    )
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
    assert np.ptp(fast) > 0  # the curve actually moves


@pytest.mark.parametrize("kind", ["fisher", "rank"])
def test_curves_from_a_shared_start_equal_curves_from_a_fresh_start(kind, train):
    p = _pipeline(kind, ((1, 1), (2, 2)), train, rotate=False)
    image = stripes(np.random.default_rng(4), 54)
    blocks = block_grid(image.shape, 9)
    order = np.random.default_rng(5).permutation(len(blocks))
    start = IncrementalImage(p, image, target=1)
    assert (start._linear is not None) == (kind == "fisher")  # the linear score path is taken
    before = (start.score, start.channels[0].pooled.copy(), start.channels[0].descriptors.data.copy())
    noise = make_perturbation("uniform")
    for seed in (1, 2):
        fresh = perturbation_curve(p, image, order, blocks, 8, noise, np.random.default_rng(seed), target=1)
        shared = perturbation_curve(
            p, image, order, blocks, 8, noise, np.random.default_rng(seed), target=1, start=start
        )
        np.testing.assert_array_equal(shared, fresh)
    assert start.score == before[0]  # the start itself is left alone
    np.testing.assert_array_equal(start.channels[0].pooled, before[1])
    np.testing.assert_array_equal(start.channels[0].descriptors.data, before[2])
    assert np.isclose(start.full_score(), start.score, rtol=1e-9)
    with pytest.raises(ValueError, match="this pipeline and image"):
        perturbation_curve(
            p, 1.0 - image, order, blocks, 2, noise, np.random.default_rng(0), target=1, start=start
        )
    with pytest.raises(ValueError, match="not target"):
        perturbation_curve(p, image, order, blocks, 2, noise, np.random.default_rng(0), target=0, start=start)


def test_max_pooling_is_updated_exactly(train):
    p = Pipeline(
        [
            (
                "s",
                DenseSIFT(bin_sizes=[4], steps=3, backend="opencv"),
                RankMapping(16, pooling="max", random_state=0),
            )
        ],
        KernelSVC("hik"),
        random_state=0,
    ).fit(*train)
    state = IncrementalImage(p, stripes(np.random.default_rng(2), 64), target=1)
    rng = np.random.default_rng(3)
    for _ in range(10):
        r, c = rng.integers(0, 55, 2)
        state.set_block(r, r + 9, c, c + 9, rng.random((9, 9)))
        assert np.isclose(state.score, state.full_score(), rtol=1e-12)


def test_aopc_of_a_hand_made_ordering_on_a_toy_model():
    """A model whose score is the mean pixel value: AOPC follows by hand."""

    class MeanModel:
        classes_ = np.array([0, 1])

        def __init__(self):
            self.n_jobs = None

    # the curve arithmetic on its own
    curve = np.array([1.0, 0.6, 0.5, 0.1])
    assert np.isclose(aopc(curve), ((1 - 1) + (1 - 0.6) + (1 - 0.5) + (1 - 0.1)) / 4)
    # blocks, scores and orders by hand
    heat = np.array([[4.0, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 3.0]])
    blocks = block_grid((3, 3), 1)
    scores = block_scores(heat, blocks)
    np.testing.assert_array_equal(scores, heat.ravel())
    morf = order_blocks(scores, "morf", np.random.default_rng(0))
    assert list(morf[:4]) == [0, 8, 6, 2]
    lerf = order_blocks(scores, "lerf", np.random.default_rng(0))
    assert set(lerf[:5]) == {1, 3, 4, 5, 7}
    with pytest.raises(ValueError, match="ordering"):
        order_blocks(scores, "best", np.random.default_rng(0))


def test_region_perturbation_is_reproducible_and_lrp_beats_random(train):
    p = _pipeline("rank", ((1, 1),), train, rotate=False)
    rng = np.random.default_rng(4)
    images = [stripes(rng, 54) for _ in range(2)]
    heat = [e.heatmap for e in p.explain(images, target=1)]
    a = region_perturbation(p, images, heat, steps=20, repeats=2, seed=5, target=1)
    b = region_perturbation(p, images, heat, steps=20, repeats=2, seed=5, target=1)
    for o in a.curves:
        np.testing.assert_array_equal(a.curves[o], b.curves[o])
    assert a.aopc["morf"][0] > a.aopc["random"][0] > a.aopc["lerf"][0]
    assert "morf" in a.table()


def test_occlusion_map_matches_explicit_occlusion(train):
    p = _pipeline("rank", ((1, 1),), train, rotate=False)
    image = stripes(np.random.default_rng(5), 45)
    heat = occlusion_map(p, image, block=15, perturbation="constant", target=1)
    f0 = p.decision_function([image])[0]
    for r0, r1, c0, c1 in block_grid(image.shape, 15)[:3]:
        occluded = image.copy()
        occluded[r0:r1, c0:c1] = 0.5
        drop = f0 - p.decision_function([occluded])[0]
        assert np.isclose(heat[r0:r1, c0:c1].sum(), drop, rtol=1e-9)


def test_descriptor_replacement_for_fisher_and_kmeans(train):
    for kind in ("fisher", "rank"):
        p = _pipeline(kind, ((1, 1),), train, rotate=False)
        images = [stripes(np.random.default_rng(6), 48)]
        ex = p.explain(images, target=1)
        r = descriptor_replacement(p, images, ex, batch=20, steps=5, repeats=2, seed=1)
        assert r.curves["morf"].shape == (1, 2, 6)
        assert set(r.settings["flip_fraction"]) == {"morf", "random"}
        again = descriptor_replacement(p, images, ex, batch=20, steps=5, repeats=2, seed=1)
        np.testing.assert_array_equal(r.curves["morf"], again.curves["morf"])


def test_pixel_flipping_on_binary_images(train):
    p = _pipeline("rank", ((1, 1),), train, rotate=False)
    image = (stripes(np.random.default_rng(7), 40) > 0.4).astype(float)
    heat = p.explain([image], target=1)[0].heatmap
    r = region_perturbation(
        p, [image], [heat], ("morf",), block=1, steps=30, repeats=1, perturbation="flip", target=1
    )
    assert r.curves["morf"].shape == (1, 1, 31)
    flip = make_perturbation("flip")
    np.testing.assert_array_equal(flip(np.array([[0.0, 1.0]]), None, None), [[1.0, 0.0]])


def test_context_ratio_of_a_synthetic_heatmap():
    heat = np.zeros((10, 10))
    heat[2:4, 2:4] = 2.0  # inside: 4 pixels, mean 2 over the 4-pixel box
    heat[8, 8] = 3.0  # outside: 96 pixels, mean 3 / 96
    heat[9, 0] = -5.0  # negative relevance is ignored
    box = [(2, 4, 2, 4)]
    assert np.isclose(context_ratio(heat, box), (3 / 96) / 2)
    with pytest.raises(AnnotationError, match="cover no pixel"):
        context_ratio(heat, [])  # no NaN: an empty box area is an error


VOC_XML = """<annotation><filename>000001.jpg</filename>
<size><width>10</width><height>8</height><depth>3</depth></size>
<object><name>horse</name><difficult>0</difficult>
<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>
</annotation>"""


def test_voc_annotation_reader(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(VOC_XML)
    ann = read_voc_annotation(path)
    assert ann.filename == "000001.jpg" and ann.size == (8, 10, 3)
    assert ann.boxes("horse") == [(2, 6, 1, 5)]  # 1-based inclusive -> 0-based half-open
    assert ann.boxes("person", include_difficult=False) == []
    heat = np.ones((8, 10))
    out = context_ratios([heat], [ann], ["horse"])
    assert np.isclose(out["per_class"]["horse"], 1.0)
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object><name>x</name></object>")
    with pytest.raises(AnnotationError, match="not a valid VOC annotation"):
        read_voc_annotation(bad)
    nobox = tmp_path / "nobox.xml"
    nobox.write_text("<annotation><object><name>x</name></object></annotation>")
    with pytest.raises(AnnotationError, match="bndbox"):
        read_voc_annotation(nobox)
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><annotation>&e;</annotation>')
    with pytest.raises(AnnotationError):
        read_voc_annotation(bomb)


def test_evaluate_cli_writes_curves_and_resumes(train, tmp_path):
    p = _pipeline("rank", ((1, 1),), train, rotate=False)
    model = tmp_path / "m.pkl"
    save(p, model)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(8)
    for i in range(2):
        cv2.imwrite(str(imgs / f"s{i}.png"), (stripes(rng, 45) * 255).astype(np.uint8))
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "bowlrp.evaluate",
        "--model",
        str(model),
        "--images",
        str(imgs),
        "--steps",
        "10",
        "--repeats",
        "2",
        "--out",
        str(out),
        "--target",
        "1",
        "--methods",
        "lrp-eps0,lrp-eps1,random,occlusion",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "lrp-eps0" in r.stdout and "occlusion" in r.stdout
    summary = json.loads((out / "curves.json").read_text())["methods"]
    assert set(summary) == {"lrp-eps0", "lrp-eps1", "random", "occlusion"}
    for name in ("curves.csv", "aopc.csv", "curves.png"):
        assert (out / name).is_file()
    partial = sorted((out / "partial").iterdir())
    assert len(partial) == 2
    stamp = [f.stat().st_mtime_ns for f in partial]
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0
    assert [f.stat().st_mtime_ns for f in partial] == stamp  # resumed, not recomputed
    bad = subprocess.run(cmd[:-1] + ["magic"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.startswith("bowlrp-evaluate: error:")
    empty = subprocess.run(cmd[:-1] + [""], capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "--methods names no method" in empty.stderr
    # another seed changes every result: recomputed, never reused
    cheap = cmd[:-1] + ["lrp-eps0,random"]
    r3 = subprocess.run(
        cheap + ["--seed", "5", "--order", "lerf"], capture_output=True, text=True, timeout=300
    )
    assert r3.returncode == 0, r3.stderr
    assert "AOPC (LeRF)" in r3.stdout
    records = [json.loads(f.read_text()) for f in partial]
    assert all(rec["key"]["seed"] == 5 and rec["key"]["order"] == "lerf" for rec in records)
    # a corrupt partial result is named and recomputed
    partial[0].write_text("{not json")
    r4 = subprocess.run(
        cheap + ["--seed", "5", "--order", "lerf"], capture_output=True, text=True, timeout=300
    )
    assert r4.returncode == 0 and str(partial[0]) in r4.stderr and "recomputing" in r4.stderr
    assert json.loads(partial[0].read_text())["key"]["seed"] == 5
    # a second run on a locked folder is refused with one line
    from bowlrp._utils.lock import FolderLock

    with FolderLock(out, "another bowlrp-evaluate"):
        locked = subprocess.run(cheap, capture_output=True, text=True, timeout=120)
    assert locked.returncode == 2 and "in use by another bowlrp-evaluate" in locked.stderr
    assert len(locked.stderr.strip().splitlines()) == 1


@pytest.mark.vlfeat
def test_incremental_is_exact_with_vlfeat_exact_mode(train):
    from bowlrp.descriptors import vlfeat_available

    if not vlfeat_available():
        pytest.skip("cyvlfeat not installed ([vlfeat] extra)")
    p = Pipeline(
        [
            (
                "s",
                DenseSIFT(bin_sizes=[4, 6], steps=3, backend="vlfeat", fast=False),
                FisherVector(GMMVocabulary(4, pca_components=12, random_state=0), pyramid=((1, 1), (2, 2))),
            )
        ],
        KernelSVC("linear"),
        random_state=0,
    ).fit(*train)
    image = stripes(np.random.default_rng(9), 72)
    blocks = block_grid(image.shape, 9)
    order = order_blocks(np.arange(len(blocks), dtype=float), "morf", np.random.default_rng(0))
    fast = perturbation_curve(
        p, image, order, blocks, 20, make_perturbation("uniform"), np.random.default_rng(1), target=1
    )
    slow = perturbation_curve(
        p,
        image,
        order,
        blocks,
        20,
        make_perturbation("uniform"),
        np.random.default_rng(1),
        target=1,
        incremental=False,
    )
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


def test_evaluate_images_library_equals_cli(train, tmp_path):
    """The data-set evaluation runs without argparse and gives the CLI's curves and AOPC."""
    from bowlrp.cli.evaluate import main
    from bowlrp.evaluation.runner import EvaluationSettings, evaluate_images
    from bowlrp.model_files import load

    p = _pipeline("rank", ((1, 1),), train, rotate=False)
    model = tmp_path / "m.pkl"
    save(p, model)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(9)
    for i in range(2):
        cv2.imwrite(str(imgs / f"s{i}.png"), (stripes(rng, 40) * 255).astype(np.uint8))
    out = tmp_path / "cli"
    assert (
        main(
            [
                "--model",
                str(model),
                "--images",
                str(imgs),
                "--steps",
                "6",
                "--repeats",
                "2",
                "--out",
                str(out),
                "--target",
                "1",
                "--seed",
                "3",
                "--methods",
                "lrp-eps0,random",
                "--quiet",
            ]
        )
        == 0
    )
    cli = json.loads((out / "curves.json").read_text())["methods"]
    cli_images = {
        json.loads(f.read_text())["id"]: json.loads(f.read_text())["curves"]
        for f in (out / "partial").iterdir()
    }
    run = evaluate_images(
        imgs,
        load(model),
        methods=["lrp-eps0", "random"],
        target=1,
        settings=EvaluationSettings(steps=6, repeats=2, seed=3),
        progress=False,
    )
    assert run.n_inputs == 2 and {r["id"] for r in run.results} == set(cli_images) == {"s0", "s1"}
    for r in run.results:
        assert r["curves"] == cli_images[r["id"]]
        assert np.asarray(r["curves"]["lrp-eps0"]).shape == (2, 7)
    assert set(run.summary) == {"lrp-eps0", "random"}
    for m, d in run.summary.items():
        assert d["aopc"] == cli[m]["aopc"] and d["mean_curve"] == cli[m]["mean_curve"]
        assert d["n_images"] == 2
