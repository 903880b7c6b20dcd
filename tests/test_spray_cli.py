"""bowlrp-spray: reading bowlrp-explain output folders, the report, and hostile input."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bowlrp.cli.spray import main
from bowlrp.runs.inputs import ImageInput
from bowlrp.runs.store import RelevanceStore, store_lock
from bowlrp.spray.heatmap_files import HeatmapFileError, find_heatmaps, find_image, group_by_target


def write_explained(
    root: Path,
    images: Path | None,
    n_corner=8,
    n_centre=8,
    target="horse",
    sub="a",
    seed=0,
    image_field="relative",
):
    """Files as bowlrp-explain writes them: <stem>_relevance.npy + <stem>.json (+ the images)."""
    rng = np.random.default_rng(seed)
    (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:32, :32]
    for i in range(n_corner + n_centre):
        cy, cx = (26, 5) if i < n_corner else (16, 16)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0) + rng.normal(0, 0.02, (32, 32))
        stem = f"{target}_{i:02d}"
        np.save(root / sub / f"{stem}_relevance.npy", m)
        meta = {"target": target, "score": 1.0}
        if images is not None:
            (images / sub).mkdir(parents=True, exist_ok=True)
            img_path = images / sub / f"{stem}.png"
            cv2.imwrite(str(img_path), rng.integers(0, 255, (32, 32), dtype=np.uint8))
            if image_field == "absolute":
                meta["image"] = str(img_path.resolve())
            elif image_field == "relative":
                meta["image"] = f"{sub}/{stem}.png"
        (root / sub / f"{stem}.json").write_text(json.dumps(meta))


def run_cli(args, capsys):
    code = main([*map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_report_from_nested_folders_with_images(tmp_path, capsys):
    heat, imgs, out = tmp_path / "heat", tmp_path / "imgs", tmp_path / "report"
    write_explained(heat, imgs, target="horse", sub="a")
    write_explained(
        heat, imgs, n_corner=0, n_centre=12, target="cat", sub="b/c", seed=1, image_field="none"
    )  # found by the same relative stem under --images
    (heat / "summary.json").write_text(json.dumps({"n_images": 28}))  # a run summary is ignored
    code, stdout, err = run_cli(["--heatmaps", heat, "--images", imgs, "--out", out], capsys)
    assert code == 0, err
    assert "class horse: 16 maps, 2 clusters (8, 8)" in stdout
    names = {p.name for p in out.iterdir()}
    assert {
        "index.html",
        "clusters.csv",
        "spectrum.json",
        "ranking.png",
        "spectrum_0.png",
        "tsne_0.png",
        "cluster_0_0_mean.png",
        "cluster_0_0_examples.png",
    } <= names
    page = (out / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from the network
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', page):
        assert (out / ref).is_file(), ref
    assert "Classes ranked" in page
    spec = json.loads((out / "spectrum.json").read_text())
    assert [r["class"] for r in spec["ranking"]] == ["horse", "cat"]
    horse = next(c for c in spec["classes"] if c["class"] == "horse")
    assert horse["n_clusters"] == 2 and sorted(horse["cluster_sizes"]) == [8, 8]
    assert len(horse["eigenvalues"]) == 10
    with open(out / "clusters.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 28
    assert set(rows[0]) == {"image", "heatmap", "class", "cluster", "tsne_x", "tsne_y"}
    horse_rows = [r for r in rows if r["class"] == "horse"]
    by_cluster = {}
    for r in horse_rows:
        by_cluster.setdefault(r["cluster"], set()).add(int(Path(r["image"]).stem.split("_")[1]) < 8)
    assert sorted(map(frozenset, by_cluster.values()), key=sorted) == [{False}, {True}]
    assert all(Path(r["image"]).is_file() for r in rows)
    strip = cv2.imread(str(out / "cluster_0_0_examples.png"))
    assert strip.shape[0] == 96 and strip.shape[1] == 8 * 96 + 7 * 4


def test_python_dash_m_and_heatmaps_only(tmp_path):
    heat, out = tmp_path / "heat", tmp_path / "r"
    write_explained(heat, None, n_corner=5, n_centre=5, image_field="none")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bowlrp.spray",
            "--heatmaps",
            str(heat),
            "--out",
            str(out),
            "--clusters",
            "2",
            "--normalize",
            "l1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").is_file() and not (out / "ranking.png").exists()
    spec = json.loads((out / "spectrum.json").read_text())
    assert spec["parameters"]["normalize"] == "l1" and spec["classes"][0]["n_clusters"] == 2


def test_finding_images_by_absolute_path(tmp_path):
    heat, imgs = tmp_path / "heat", tmp_path / "imgs"
    write_explained(heat, imgs, n_corner=1, n_centre=0, image_field="absolute")
    rec = find_heatmaps(heat)[0]
    assert rec.stem == "a/horse_00" and rec.target == "horse" and rec.shape == (32, 32)
    assert find_image(rec, imgs) == (imgs / "a" / "horse_00.png").resolve()
    # a record's "image" field is untrusted: a file outside the images folder is never read
    with pytest.raises(HeatmapFileError, match="lies outside it and was not read"):
        find_image(rec, tmp_path / "elsewhere")
    assert list(group_by_target(find_heatmaps(heat))) == ["horse"]


def _assert_fails(capsys, args, match, out):
    code, _, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bowlrp-spray: error:"), err
    assert re.search(match, lines[0]), lines[0]
    if out is not None:
        assert not out.exists() or not any(out.iterdir())
        assert not list(out.parent.glob(f".{out.name}.tmp-*"))


def _assert_skips(capsys, args, match, out):
    """One bad record is skipped with one line naming it; the report of the rest is written (exit 1)."""
    report = Path(str(args[args.index("--out") + 1]))
    code, _, err = run_cli(args, capsys)
    assert code == 1, err
    assert re.search(match, err), err
    assert (report / "index.html").is_file(), err
    skipped = json.loads((report / "spectrum.json").read_text())["skipped_records"]
    assert skipped and any(re.search(match, " ".join(map(str, s.values()))) for s in skipped), skipped


def test_bad_input_fails_in_one_line_and_a_bad_record_is_skipped(tmp_path, capsys):
    out = tmp_path / "report"
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_fails(capsys, ["--heatmaps", empty, "--out", out], r"no \*_relevance\.npy files under", out)
    _assert_fails(capsys, ["--heatmaps", tmp_path / "missing", "--out", out], "not found", out)

    two = tmp_path / "two"
    write_explained(two, None, n_corner=1, n_centre=1, image_field="none")
    _assert_fails(capsys, ["--heatmaps", two, "--out", out], "at least 3 heatmaps.*'horse': 2", out)

    orphan = tmp_path / "orphan"
    write_explained(orphan, None, image_field="none")
    (orphan / "a" / "horse_03.json").unlink()
    _assert_skips(
        capsys,
        ["--heatmaps", orphan, "--out", tmp_path / "reports" / "orphan"],
        "horse_03_relevance.npy has no horse_03.json",
        out,
    )

    notarget = tmp_path / "notarget"
    write_explained(notarget, None, image_field="none")
    (notarget / "a" / "horse_02.json").write_text("{}")
    _assert_skips(
        capsys,
        ["--heatmaps", notarget, "--out", tmp_path / "reports" / "notarget"],
        'horse_02.json has no "target"',
        out,
    )

    broken = tmp_path / "broken"
    write_explained(broken, None, image_field="none")
    (broken / "a" / "horse_01_relevance.npy").write_bytes(b"not a numpy file")
    _assert_skips(
        capsys,
        ["--heatmaps", broken, "--out", tmp_path / "reports" / "broken"],
        "cannot read .*horse_01_relevance.npy",
        out,
    )

    wrongdim = tmp_path / "wrongdim"
    write_explained(wrongdim, None, image_field="none")
    np.save(wrongdim / "a" / "horse_01_relevance.npy", np.zeros((3, 4, 5)))
    _assert_skips(
        capsys,
        ["--heatmaps", wrongdim, "--out", tmp_path / "reports" / "wrongdim"],
        r"shape \(3, 4, 5\), not a 2-D heatmap",
        out,
    )

    nan = tmp_path / "nan"
    write_explained(nan, None, image_field="none")
    np.save(nan / "a" / "horse_04_relevance.npy", np.full((32, 32), np.nan))
    _assert_skips(
        capsys,
        ["--heatmaps", nan, "--out", tmp_path / "reports" / "nan"],
        "horse_04_relevance.npy contains NaN",
        out,
    )

    good, imgs = tmp_path / "good", tmp_path / "imgs"
    write_explained(good, imgs, image_field="none")
    (imgs / "a" / "horse_05.png").unlink()
    _assert_skips(
        capsys,
        ["--heatmaps", good, "--images", imgs, "--out", tmp_path / "reports" / "good"],
        "no image for .*horse_05",
        out,
    )

    cv2.imwrite(str(imgs / "a" / "horse_05.png"), np.zeros((20, 20), np.uint8))
    _assert_skips(
        capsys,
        [
            "--heatmaps",
            good,
            "--images",
            imgs,
            "--out",
            tmp_path / "reports" / "small-image",
            "--examples",
            "16",
        ],
        "is 20x20 pixels but its heatmap .* is 32x32",
        out,
    )

    _assert_fails(capsys, ["--heatmaps", good, "--out", out, "--clusters", "many"], "--clusters", out)

    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _assert_fails(capsys, ["--heatmaps", good, "--out", out], "exists and is not an empty directory", None)
    assert (out / "keep.txt").read_text() == "mine"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="no \\*_relevance.npy"):
        main(["--heatmaps", str(tmp_path), "--out", str(tmp_path / "r"), "--debug"])


# -- bowlrp-spray --store draws its examples over the images the store records (issue 25, item 11)


class _Explained:
    """The little of an explanation a relevance store records."""

    def __init__(self, heatmap: np.ndarray):
        self.heatmap = heatmap
        self.score, self.bias_relevance, self.residual, self.absorbed = float(heatmap.sum()), 0.0, 0.0, 0.0

    def summary(self) -> dict:
        return {"target": "horse", "rules": {}}


def _recorded_store(tmp_path: Path, n: int = 8) -> tuple[Path, Path]:
    """A store of ``n`` records whose images (16 x 16 PNGs in ``photos/``) exist; two map patterns."""
    photos, store = tmp_path / "photos", tmp_path / "maps.zarr"
    photos.mkdir()
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:16, :16]
    with store_lock(store, "test"):
        st = RelevanceStore.create(store, {"m": 1})
        for i in range(n):
            path = photos / f"p{i}.png"
            cv2.imwrite(str(path), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
            cy, cx = (12, 3) if i % 2 else (8, 8)
            heat = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0) + rng.normal(0, 0.02, (16, 16))
            st.write(ImageInput(path.resolve(), f"p{i}"), [_Explained(heat)], model_hash="h")
    return store, photos


def _example_strips(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("cluster_*_examples.png"))}


def main_with_stderr(args, capsys):
    """Like run_cli, without --quiet (the line about missing images is shown)."""
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_store_report_draws_over_the_recorded_images(tmp_path, capsys):
    store, photos = _recorded_store(tmp_path)
    code, _, err = run_cli(["--store", store, "--out", tmp_path / "recorded", "--clusters", "2"], capsys)
    assert code == 0, err
    code, _, err = run_cli(
        ["--store", store, "--out", tmp_path / "named", "--clusters", "2", "--images", photos], capsys
    )
    assert code == 0, err
    recorded, named = _example_strips(tmp_path / "recorded"), _example_strips(tmp_path / "named")
    assert recorded and recorded == named  # the recorded images, as --images would find them

    for p in photos.iterdir():  # images gone: bare heatmaps, and one line says why
        p.unlink()
    code, _, err = main_with_stderr(["--store", store, "--out", tmp_path / "bare", "--clusters", "2"], capsys)
    assert code == 0, err
    assert _example_strips(tmp_path / "bare") != recorded
    assert "8 of the 8 images the store records are missing or unreadable" in err


def test_store_report_never_opens_a_recorded_special_file(tmp_path, capsys):
    store, photos = _recorded_store(tmp_path)
    (photos / "p0.png").unlink()
    os.mkfifo(photos / "p0.png")  # opening it would wait for a writer forever
    (photos / "p1.png").unlink()
    (photos / "p1.png").symlink_to("/etc/hostname")  # not an image's name once resolved
    code, _, err = run_cli(["--store", store, "--out", tmp_path / "r", "--clusters", "2"], capsys)
    assert code == 0, err


def test_clusterings_embeddings_and_a_shared_cache_from_the_command_line(tmp_path, capsys):
    heat, cache = tmp_path / "heat", tmp_path / "cache"
    write_explained(heat, None, n_corner=6, n_centre=6, image_field="none")
    first = ["--heatmaps", heat, "--clusterings", "kmeans", "--k-range", "2", "3", "--embeddings", "spectral"]
    code, _, err = run_cli([*first, "--out", tmp_path / "r1", "--cache", cache], capsys)
    assert code == 0, err
    spec = json.loads((tmp_path / "r1" / "spectrum.json").read_text())
    assert set(spec["classes"][0]["clusterings"]) == {"kmeans-k2", "kmeans-k3"}
    entries = sorted(p.name for p in cache.iterdir())
    assert any(name.startswith("eigen") for name in entries), entries

    # another clustering family: the same eigendecomposition entry serves it (its reuse is counted
    # in tests/test_spray_analyses.py)
    again = ["--heatmaps", heat, "--clusterings", "spectral", "--k-range", "2", "2", "--embeddings", "none"]
    code, _, err = run_cli([*again, "--out", tmp_path / "r2", "--cache", cache], capsys)
    assert code == 0, err
    assert not [p for p in cache.iterdir() if p.name.startswith("eigen") and p.name not in entries]
    spec = json.loads((tmp_path / "r2" / "spectrum.json").read_text())
    assert set(spec["classes"][0]["clusterings"]) == {"spectral-k2"}

    for bad, says in [
        (["--clusterings", "kmeans,optics"], "unknown optics"),
        (["--k-range", "3", "2"], "--k-range"),
        (["--cache", tmp_path / "r3" / "c"], "--cache inside --out"),
    ]:
        code, _, err = run_cli(["--heatmaps", heat, "--out", tmp_path / "r3", *bad], capsys)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
