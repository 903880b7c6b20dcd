"""The SpRAy report with several clusterings per class and the ranking of every class first (issue 28)."""

import csv
import json
import re

import cv2
import numpy as np

from bowlrp.spray.heatmap_files import find_heatmaps, group_by_target
from bowlrp.spray.report import analyse_heatmaps, write_report

from .test_spray_cli import write_explained


def test_report_has_a_selector_between_clusterings_and_the_ranking_first(tmp_path):
    heat, imgs, out = tmp_path / "heat", tmp_path / "imgs", tmp_path / "report"
    out.mkdir()
    write_explained(heat, imgs, target="horse", sub="a")
    write_explained(heat, imgs, n_corner=0, n_centre=12, target="cat", sub="b", seed=1)
    write_explained(heat, imgs, n_corner=5, n_centre=10, target="dog", sub="c", seed=2)
    groups = group_by_target(find_heatmaps(heat))
    params = {"random_state": 0, "clusterings": ("spectral", "kmeans", "hdbscan"), "k_range": (2, 4)}
    analyses, skipped = analyse_heatmaps(groups, params, quiet=True)
    for a in analyses:
        a.records = [r.__class__(**{**vars(r), "image": imgs / r.meta["image"]}) for r in a.records]
    write_report(out, analyses, skipped, source=str(heat), quiet=True)
    page = (out / "index.html").read_text()
    # the ranking of every class comes before the first class's section
    assert page.index("Classes ranked") < page.index('<section id="class-0">')
    spec = json.loads((out / "spectrum.json").read_text())
    assert len(spec["ranking"]) == 3 and {r["class"] for r in spec["ranking"]} == {"horse", "cat", "dog"}
    assert all("eigengap" in r and "lambda_2" in r for r in spec["ranking"])
    # one selector per class, an option and a panel per clustering (+ the eigengap's labels_)
    names = ["spectral-k2", "spectral-k3", "spectral-k4", "kmeans-k2", "kmeans-k3", "kmeans-k4", "hdbscan"]
    assert len(re.findall(r'<select id="clustering-\d"', page)) == 3
    for i in range(3):
        section = page.split(f'<section id="class-{i}">')[1].split("</section>")[0]
        assert len(re.findall(r"<option ", section)) == 1 + len(names)
        panels = re.findall(r'<div class="panel" data-panel="(\d+)"( hidden)?>', section)
        assert [int(p) for p, _ in panels] == list(range(1 + len(names)))
        assert [bool(h) for _, h in panels] == [False] + [True] * len(names)  # the eigengap's first
        for name in names:
            assert f"{name} &mdash;" in section
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', page):
        assert (out / ref).is_file(), ref
    # the horse class (rank 1): 8 stamped (corner) and 8 centred; k-means with k = 2 separates them
    horse = next(c for c in spec["classes"] if c["class"] == "horse")
    assert horse["clusterings"]["kmeans-k2"]["cluster_sizes"] == [8, 8]
    assert horse["clusterings"]["kmeans-k2"]["k"] == 2
    i = [c["class"] for c in spec["classes"]].index("horse")
    j = list(horse["clusterings"]).index("kmeans-k2")
    for c in (0, 1):
        strip = cv2.imread(str(out / f"clustering_{i}_{j}_{c}_examples.png"))
        assert strip.shape[0] == 96 and strip.shape[1] == 8 * 96 + 7 * 4
        mean = cv2.imread(str(out / f"clustering_{i}_{j}_{c}_mean.png"))
        assert mean.shape == (120, 120, 3)
    with open(out / "clusterings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == (16 + 12 + 15) * len(names)
    horse_k2 = [r for r in rows if r["class"] == "horse" and r["clustering"] == "kmeans-k2"]
    stamped = {int(r["image"].split("_")[-1].split(".")[0]) < 8 for r in horse_k2 if r["cluster"] == "0"}
    assert len(stamped) == 1  # one cluster holds only stamped or only centred maps
    # the mean map of the corner cluster peaks in the corner (pooled 20 x 20: rows 15-17, cols 2-4)
    corner = next(
        c
        for c in (0, 1)
        if all(int(r["image"].split("_")[-1][:2]) < 8 for r in horse_k2 if r["cluster"] == str(c))
    )
    X = np.stack([a.pooled for a in analyses if a.target == "horse"][0])
    labels = np.array([int(r["cluster"]) for r in horse_k2])
    peak = np.unravel_index(X[labels == corner].mean(0).argmax(), (20, 20))
    assert peak[0] >= 14 and peak[1] <= 5
