"""The evaluation suite (issue 26, "one command, one report"): library call, report files, command line."""

import html
import json

import cv2
import numpy as np
import pytest

import bowlrp
from bowlrp import DenseSIFT, HardAssignment, KernelSVC, Pipeline
from bowlrp.cli import evaluate as cli
from bowlrp.datasets import polygons as polygon_data
from bowlrp.datasets import shortcut as shortcut_data
from bowlrp.evaluation import suite as suite_module
from bowlrp.evaluation.faithfulness import irof, pixel_flipping
from bowlrp.evaluation.localisation import relevance_mass_accuracy
from bowlrp.evaluation.road import road
from bowlrp.evaluation.suite import SuiteSettings, evaluate_suite, read_masks
from bowlrp.evaluation.suite_report import check_suite_files_are_ours, record_words, write_suite_report

TINY = SuiteSettings(
    road_fractions=(0.3, 0.6),
    flip_steps=3,
    irof_segments=4,
    correlation_runs=4,
    correlation_subset=50,
    region_steps=3,
    robustness_samples=2,
)


def edges(model, images, targets):
    """A model-independent explainer: the gradient magnitude of the image (Sobel)."""
    out = []
    for im in images:
        g = im if im.ndim == 2 else im.mean(axis=2)
        out.append(np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1)))
    return out


@pytest.fixture(scope="module")
def shortcut():
    """A small BoW model on the shortcut data and three stamped class-1 images with their stamp masks."""
    train = shortcut_data.generate(0, 16, 0.6)
    model = Pipeline(
        [("sift", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), HardAssignment(16, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    ).fit([s.image for s in train], [s.label for s in train])
    test = [s for s in shortcut_data.generate(1000, 6, 1.0) if s.has_artefact][:3]
    return model, test


@pytest.fixture(scope="module")
def cheap(shortcut):
    """The model-free families and the sanity check for LRP, a random map and an edge detector."""
    model, test = shortcut
    return evaluate_suite(
        model,
        [s.image for s in test],
        methods=("lrp", "random", edges),
        families=("sanity", "localisation", "complexity"),
        masks=[s.artefact_mask() for s in test],
        target=1,
        settings=TINY,
        progress=False,
    )


def test_suite_pairs_every_method_on_the_same_images(cheap):
    assert cheap.methods == ["lrp", "random", "edges"]
    assert cheap.families == ["sanity", "localisation", "complexity"]
    expected = {"randomisation_similarity", "relevance_mass_accuracy", "relevance_rank_accuracy"}
    expected |= {"pointing_game", "localisation_auc", "context_ratio", "sparseness", "complexity"}
    assert set(cheap.metrics) == expected
    # plain-NumPy reference of the paired difference: mean and standard error of a - b per image
    a = cheap.metrics["relevance_mass_accuracy"]["lrp"].values
    b = cheap.metrics["relevance_mass_accuracy"]["random"].values
    d = (a - b)[np.isfinite(a - b)]
    mean, se, n = cheap.paired("relevance_mass_accuracy")[("lrp", "random")]
    assert n == d.size and mean == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(n))


def test_winner_and_sentence_follow_the_metrics_direction(cheap):
    for metric, results in cheap.metrics.items():
        means = {m: r.mean for m, r in results.items() if np.isfinite(r.mean)}
        best = (max if cheap.higher_is_better(metric) else min)(means, key=means.get)
        lead = cheap.lead(metric)
        assert means[lead["winner"]] == means[best]
        d, se, _ = results[lead["winner"]].paired_difference(results[lead["runner_up"]])
        assert lead["difference"] == d and (se == 0 or lead["z"] == pytest.approx(abs(d) / se))
        sentence = cheap.sentence(metric)
        assert lead["winner"] in sentence and ("higher is better" in sentence) == cheap.higher_is_better(
            metric
        )
        if "tie" not in sentence:
            assert f"{lead['z']:.1f} paired standard errors" in sentence


def test_sanity_family_says_a_model_independent_map_fails(cheap):
    """Random noise and an edge detector do not change when the model is randomised."""
    for method in ("random", "edges"):
        r = cheap.randomisation[method]
        assert not r.passed and "fails" in r.verdict()
        similarity = cheap.metrics["randomisation_similarity"][method].values
        assert np.allclose(similarity, 1.0)
    lrp = cheap.metrics["randomisation_similarity"]["lrp"].values
    assert lrp.mean() < 0.99  # the LRP maps move with the model (pass/fail needs more images)


def test_localisation_numbers_are_the_metrics_own(shortcut, cheap):
    model, test = shortcut
    maps = bowlrp.evaluation.explain_maps(model, [s.image for s in test], "lrp", 1)
    direct = relevance_mass_accuracy(maps, [s.artefact_mask() for s in test])
    np.testing.assert_allclose(cheap.metrics["relevance_mass_accuracy"]["lrp"].values, direct.values)


def test_faithfulness_family_matches_the_metric_functions(shortcut):
    model, test = shortcut
    images = [s.image for s in test[:2]]
    result = evaluate_suite(
        model, images, ("lrp", "random"), "faithfulness", target=1, settings=TINY, progress=False
    )
    maps = bowlrp.evaluation.explain_maps(model, images, "lrp", 1)
    for order in ("morf", "lerf"):
        direct = [
            road(model, [im], target=1, maps=[m], order=order, fractions=(0.3, 0.6))
            for im, m in zip(images, maps)
        ]
        np.testing.assert_allclose(
            result.metrics[f"road_{order}"]["lrp"].values, [r.values[0] for r in direct], rtol=1e-9
        )
    flips = pixel_flipping(model, images[:1], target=1, maps=maps[:1], steps=3)
    assert result.metrics["pixel_flipping_morf"]["lrp"].values[0] == pytest.approx(flips.values[0], rel=1e-9)
    segments = irof(model, images[:1], target=1, maps=maps[:1], n_segments=4)
    np.testing.assert_allclose(
        result.metrics["irof"]["lrp"].values[:1], segments.values, rtol=1e-9, equal_nan=True
    )
    between = result.metrics["road_area_between"]["lrp"].values
    lerf, morf = (result.metrics[f"road_{o}"]["lrp"].values for o in ("lerf", "morf"))
    np.testing.assert_allclose(between, lerf - morf)
    assert result.metrics["road_morf"]["lrp"].curves.shape == (2, 3)


def test_report_files_and_refusing_foreign_files(cheap, tmp_path):
    written = write_suite_report(cheap, tmp_path / "out")
    names = {p.name for p in written}
    assert {"suite.json", "suite.csv", "suite_table.png", "report.html", "randomisation_lrp.png"} <= names
    data = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert data["schema"] == suite_module.SCHEMA and data["n_images"] == 3
    rma = data["metrics"]["relevance_mass_accuracy"]
    assert rma["higher_is_better"] is True and "lrp - random" in rma["paired_differences"]
    assert rma["methods"]["lrp"]["n"] == 3 and len(rma["methods"]["lrp"]["values"]) == 3
    rows = (tmp_path / "out" / "suite.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(cheap.metrics) * len(cheap.methods)
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # the table and three randomisation figures
    assert all(html.escape(cheap.sentence(m)) in page for m in cheap.metrics)
    write_suite_report(cheap, tmp_path / "out")  # its own files: replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.html").write_text("my notes")
    with pytest.raises(
        FileExistsError, match="report.html exists and was not written by the evaluation suite"
    ):
        check_suite_files_are_ours(tmp_path / "mine", cheap.methods)
    assert (tmp_path / "mine" / "report.html").read_text() == "my notes"


def test_masks_from_the_data_sets(tmp_path):
    samples = shortcut_data.generate(3, 2, 1.0)
    paths = shortcut_data.save_samples(samples, tmp_path / "sc", "test")
    boxes = read_masks(paths, "shortcut")
    for s, b in zip(samples, boxes):
        mask = bowlrp.evaluation.as_masks([b], [s.image.shape])[0]
        np.testing.assert_array_equal(mask, s.artefact_mask())
    scenes = polygon_data.generate(1, 1, 120, 120)
    [scene_path] = polygon_data.save_scenes(scenes, tmp_path / "poly", "scene")
    [mask] = read_masks([scene_path], "polygons")
    np.testing.assert_array_equal(mask, np.isin(scenes[0].mask, sorted(scenes[0].polygon_ids())))
    with pytest.raises(ValueError, match="unknown mask source"):
        read_masks([scene_path], "bogus")
    with pytest.raises(ValueError, match="no VOC annotation"):
        read_masks([scene_path], f"voc:{tmp_path}")


def test_command_line_suite_writes_one_report(shortcut, tmp_path, capsys):
    model, test = shortcut
    bowlrp.save(model, tmp_path / "m.skops")
    shortcut_data.save_samples(test, tmp_path / "images", "stamped")
    argv = ["--model", str(tmp_path / "m.skops"), "--images", str(tmp_path / "images"), "--quiet"]
    argv += [
        "--suite",
        "localisation",
        "--suite",
        "complexity",
        "--methods",
        "lrp,random",
        "--masks",
        "shortcut",
    ]
    assert cli.main(argv + ["--target", "1", "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "relevance mass accuracy" in said and "report.html" in said
    data = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert data["methods"] == ["lrp", "random"] and data["record"]["masks"] == "shortcut"
    assert not (tmp_path / "out" / "curves.json").exists()  # the suite, not the region run
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "suite.csv").write_text("mine")
    assert cli.main(argv + ["--out", str(tmp_path / "foreign")]) == 2
    assert "was not written by the evaluation suite" in capsys.readouterr().err
    assert cli.main(argv[:5] + ["--masks", "shortcut", "--out", str(tmp_path / "x")]) == 2
    assert "--masks is an input of --suite" in capsys.readouterr().err


def test_cli_families_are_the_librarys():
    assert cli.SUITE_FAMILIES == suite_module.FAMILIES
    with pytest.raises(ValueError, match="unknown families"):
        suite_module._check_families(["faith"])


def test_the_report_names_a_long_image_list_by_its_count_and_first_few():
    images = [f"tiles/im{k:02d}.png" for k in range(40)]
    words = record_words({"model": "m.skops", "images": images, "target": "1", "masks": None})
    assert words.startswith(
        "model: m.skops; images: 40, first: tiles/im00.png, tiles/im01.png, tiles/im02.png"
    )
    assert "tiles/im03.png" not in words and "all in suite.json" in words
    assert words.endswith("target: 1; masks: null")
    assert record_words({"images": images[:2]}) == "images: tiles/im00.png, tiles/im01.png"
