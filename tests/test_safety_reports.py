"""Issue 24, findings 13 and 18: bad records are skipped and listed, pictures stay in --images,
folder-mode evaluate goes on past a failing image, and CSV cells are never formulas."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import bowlrp.spray.report
from bowlrp import DenseSIFT, KernelSVC, Pipeline, RankMapping, save
from bowlrp._utils.csv_cells import csv_cell as evaluation_csv_cell
from bowlrp.cli.spray import main
from bowlrp.evaluation.runner import EvaluationSettings, evaluate_images, write_outputs
from bowlrp.model_files import load
from bowlrp.runs.inputs import ImageInput
from bowlrp.runs.store import RelevanceStore, id_to_key
from bowlrp.spray.report import csv_cell

from .conftest import stripes


def write_maps(root: Path, images: Path | None, n: int = 8, target="horse", start: int = 0) -> list[str]:
    """``n`` records as bowlrp-explain writes them (two planted groups), with images; their stems."""
    rng = np.random.default_rng(start)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:32, :32]
    stems = []
    for i in range(start, start + n):
        cy, cx = (26, 5) if i % 2 else (16, 16)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0) + rng.normal(0, 0.02, (32, 32))
        stem = f"img_{i:02d}"
        np.save(root / f"{stem}_relevance.npy", m)
        meta = {"target": target, "score": 1.0}
        if images is not None:
            images.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(images / f"{stem}.png"), rng.integers(0, 255, (32, 32), dtype=np.uint8))
            meta["image"] = f"{stem}.png"
        (root / f"{stem}.json").write_text(json.dumps(meta))
        stems.append(stem)
    return stems


def spray(args, capsys):
    code = main([*map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def report_of(out: Path) -> tuple[dict, list[list[str]], str]:
    spec = json.loads((out / "spectrum.json").read_text())
    with open(out / "clusters.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return spec, rows, (out / "index.html").read_text(encoding="utf-8")


def test_a_non_utf8_name_is_skipped_not_fatal(tmp_path, capsys):
    heat, out = tmp_path / "heat", tmp_path / "report"
    write_maps(heat, None)
    bad = os.fsdecode(b"\xff\xfe")
    shutil.copy(heat / "img_00_relevance.npy", heat / f"{bad}_relevance.npy")
    shutil.copy(heat / "img_00.json", heat / f"{bad}.json")
    code, stdout, err = spray(["--heatmaps", heat, "--out", out], capsys)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert any("\\xff\\xfe_relevance.npy" in line and "not valid UTF-8" in line for line in lines), err
    assert "class horse: 8 maps" in stdout
    spec, rows, page = report_of(out)
    assert len(rows) == 9 and len(spec["skipped_records"]) == 1
    assert "\\xff\\xfe" in spec["skipped_records"][0]["record"] and "\\xff\\xfe" in page


def test_corrupt_records_are_skipped_listed_and_exit_1(tmp_path, capsys):
    heat, imgs, out = tmp_path / "heat", tmp_path / "imgs", tmp_path / "report"
    write_maps(heat, imgs, n=10)
    (heat / "img_01.json").write_text("{not json")
    (heat / "img_02_relevance.npy").write_bytes((heat / "img_02_relevance.npy").read_bytes()[:100])
    np.save(heat / "img_03_relevance.npy", np.full((32, 32), np.nan))
    (heat / "img_04.json").write_text(json.dumps({"target": "horse", "image": "/etc/passwd"}))
    (imgs / "img_05.png").unlink()
    code, stdout, err = spray(["--heatmaps", heat, "--images", imgs, "--out", out], capsys)
    assert code == 1, err
    skipped = [line for line in err.splitlines() if line.startswith("bowlrp-spray: skipped ")]
    assert len(skipped) == 5, err
    for stem, why in [
        ("img_01.json", "cannot read"),
        ("img_02_relevance.npy", "cannot read"),
        ("img_03_relevance.npy", "NaN"),
        ("img_04.json", "/etc/passwd"),
        ("img_05", "no image"),
    ]:
        assert any(stem in line and why in line for line in skipped), (stem, err)
    assert "class horse: 5 maps" in stdout
    spec, rows, page = report_of(out)
    assert len(spec["skipped_records"]) == 5 and len(rows) == 6
    assert all(r["stage"] == "record" for r in spec["skipped_records"])
    assert "img_04.json" in page and "5 record(s) left out" in page


def test_nothing_analysable_exits_2(tmp_path, capsys):
    heat, out = tmp_path / "heat", tmp_path / "report"
    write_maps(heat, None, n=3)
    for stem in ("img_00", "img_01"):
        (heat / f"{stem}.json").write_text("[]")
    code, _, err = spray(["--heatmaps", heat, "--out", out], capsys)
    assert code == 2 and "error: SpRAy needs at least 3 heatmaps" in err.splitlines()[-1], err
    assert not out.exists() and not list(tmp_path.glob(".report.tmp-*"))


def test_pictures_never_read_outside_the_images_folder(tmp_path, capsys, monkeypatch):
    heat, imgs, out = tmp_path / "heat", tmp_path / "imgs", tmp_path / "report"
    write_maps(heat, imgs, n=8)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = elsewhere / "secret.png"
    cv2.imwrite(str(secret), np.zeros((32, 32), np.uint8))
    (imgs / "img_00.png").unlink()  # the record names the secret, and its stem finds nothing
    (heat / "img_00.json").write_text(json.dumps({"target": "horse", "image": str(secret)}))
    (imgs / "img_01.png").unlink()
    (imgs / "img_01.png").symlink_to(secret)  # a link out of --images is not followed either
    (heat / "img_02.json").write_text(json.dumps({"target": "horse", "image": "../elsewhere/secret.png"}))
    read = []
    real = bowlrp.spray.report.as_float_image
    monkeypatch.setattr(bowlrp.spray.report, "as_float_image", lambda p: read.append(Path(p)) or real(p))
    code, stdout, err = spray(["--heatmaps", heat, "--images", imgs, "--out", out, "--examples", "8"], capsys)
    assert code == 1, err
    assert read and all(imgs.resolve() in p.resolve().parents for p in read), read
    assert "img_00_relevance.npy" in err and "outside" in err and "img_01_relevance.npy" in err
    spec, rows, _ = report_of(out)
    images = {r[0] for r in rows[1:]}
    assert str(imgs.resolve() / "img_02.png") in images  # found by its stem, inside --images
    assert not any("secret" in name for name in images)
    assert len(rows) == 7


def _fake_explanation(heatmap, target):
    return SimpleNamespace(
        heatmap=heatmap,
        score=1.0,
        bias_relevance=0.0,
        residual=0.0,
        absorbed=0.0,
        summary=lambda: {"target": target, "rules": {}},
    )


def test_a_store_record_without_its_arrays_is_skipped(tmp_path, capsys):
    location = tmp_path / "s.zarr"
    store = RelevanceStore.create(str(location), {"model": "x"}, grid=4)
    rng = np.random.default_rng(0)
    for i in range(6):
        m, row = np.zeros((16, 16)), 8 * (i % 2)
        m[row : row + 8, :8] = 1.0
        store.write(
            ImageInput(tmp_path / f"im{i}.png", f"im{i}"),
            [_fake_explanation(m + rng.normal(0, 0.01, m.shape), "stripes")],
            model_hash="x",
        )
    shutil.rmtree(location / "images" / id_to_key("im2") / "pooled")
    out = tmp_path / "report"
    code, stdout, err = spray(["--store", location, "--out", out], capsys)
    assert code == 1, err
    assert (
        "error" not in err and "im2" in err and "images/im2/pooled: missing; explain the image again" in err
    ), err
    assert "class stripes: 5 maps" in stdout
    spec, rows, _ = report_of(out)
    assert [r["record"] for r in spec["skipped_records"]] == ["im2"] and len(rows) == 6


def test_csv_cells_are_never_formulas(tmp_path, capsys):
    for cell in (csv_cell, evaluation_csv_cell):
        assert cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
        assert cell("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
        assert [cell(v) for v in ("@SUM(A1)", "\tx", "\rx", "-2+3")] == ["'@SUM(A1)", "'\tx", "'\rx", "'-2+3"]
        assert [cell(v) for v in ("-1", "-1.5e3", "cat", -0.5, 3)] == ["-1", "-1.5e3", "cat", -0.5, 3]
    heat, out = tmp_path / "heat", tmp_path / "report"
    write_maps(heat, None, n=4, target='=HYPERLINK("http://evil","x")')
    write_maps(heat, None, n=4, target="+cmd|' /C calc'!A0", start=4)
    write_maps(heat, None, n=4, target="-1", start=8)
    code, _, err = spray(["--heatmaps", heat, "--out", out], capsys)
    assert code == 0, err
    _, rows, _ = report_of(out)
    classes = {r[2] for r in rows[1:]}
    assert classes == {'\'=HYPERLINK("http://evil","x")', "'+cmd|' /C calc'!A0", "-1"}
    assert all(not cell.startswith(("=", "+", "@")) for r in rows for cell in r)
    assert any(r[4].startswith("-") for r in rows[1:])  # t-SNE coordinates stay numbers
    summary = {"=evil()": {"aopc": 0.5, "aopc_stderr": 0.1, "mean_curve": [1.0, -0.5], "n_images": 1}}
    summary["=evil()"]["stderr_curve"] = [0.0, 0.0]
    (tmp_path / "eval").mkdir()
    write_outputs(tmp_path / "eval", summary, EvaluationSettings())
    for name in ("aopc.csv", "curves.csv"):
        rows = list(csv.reader((tmp_path / "eval" / name).open(newline="")))
        assert rows[1][0] == "'=evil()", rows
    assert rows[2][2] == "-0.5"


@pytest.fixture(scope="module")
def model_file(stripes_blobs, tmp_path_factory):
    X, y = stripes_blobs[0], stripes_blobs[1]
    p = Pipeline(
        [
            (
                "s",
                DenseSIFT(bin_sizes=[4, 6], steps=3, backend="opencv", rotate=False),
                RankMapping(16, random_state=0),
            )
        ],
        KernelSVC("hik"),
        random_state=0,
    ).fit(X, y)
    path = tmp_path_factory.mktemp("model") / "m.pkl"
    save(p, path)
    return path


def test_folder_evaluate_records_a_failing_image_and_goes_on(model_file, tmp_path):
    imgs, out = tmp_path / "imgs", tmp_path / "eval"
    imgs.mkdir()
    rng = np.random.default_rng(8)
    for i in range(2):
        cv2.imwrite(str(imgs / f"s{i}.png"), (stripes(rng, 40) * 255).astype(np.uint8))
    (imgs / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    lines = []
    run = evaluate_images(
        imgs,
        load(model_file),
        methods=["lrp-eps0", "random"],
        target=1,
        settings=EvaluationSettings(steps=4, repeats=1),
        out=out,
        progress=False,
        report=lines.append,
    )
    assert run.n_inputs == 3 and {r["id"] for r in run.results} == {"s0", "s1"}
    assert len(lines) == 1 and lines[0].startswith("error: ") and "a_broken.png" in lines[0], lines
    assert [f["id"] for f in run.failed] == ["a_broken"] and "a_broken.png" in run.failed[0]["error"]
    listed = json.loads((out / "curves.json").read_text())
    assert listed["failed"] == run.failed and listed["methods"]["random"]["n_images"] == 2
    (imgs / "s0.png").unlink()
    (imgs / "s1.png").unlink()
    with pytest.raises(ValueError, match="no image could be evaluated"):
        evaluate_images(
            imgs, load(model_file), methods=["random"], target=1, out=out, progress=False, report=lines.append
        )


def test_folder_evaluate_exits_1_when_an_image_failed(model_file, tmp_path):
    imgs, out = tmp_path / "imgs", tmp_path / "eval"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "s0.png"), (stripes(np.random.default_rng(8), 40) * 255).astype(np.uint8))
    (imgs / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = subprocess.run(
        [sys.executable, "-m", "bowlrp.evaluate", "-m", str(model_file), "-i", str(imgs), "-o", str(out)]
        + ["--steps", "3", "--repeats", "1", "--methods", "random", "--target", "1", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr
    assert "a_broken.png" in r.stderr and json.loads((out / "curves.json").read_text())["failed"]
