"""A folder run never replaces a file it did not write (issue 24: "0 silent overwrites").

4269499 wrote an image's four outputs over whatever had their names: with the
default ``--out .``, explaining ``photo.png`` replaced the user's own
``photo.json`` (or ``photo_overlay.png``) beside it, and a link at an output
path was replaced too. Now an output path may hold only what bowlrp wrote for
that image — proved by ``<id>.json`` being bowlrp's record (or claim) of it — and
anything else makes that image fail with one line naming the file while the run
goes on. Publishing renames a claim record first, so a run killed between the
renames leaves files that the next run knows are its own.
"""

from __future__ import annotations

import json
import os

import pytest

from bowlrp.runs.folder import is_done, publish
from bowlrp.runs.folder_layout import OutputConflict, check_outputs_are_ours, output_paths
from bowlrp.runs.inputs import collect_inputs
from bowlrp.spray.heatmap_files import HeatmapFileError, find_heatmaps
from tests.test_batch import _run, model, png  # noqa: F401 - fixtures


@pytest.mark.parametrize("name", ["a.json", "a_overlay.png", "a_heatmap.png", "a_relevance.npy"])
def test_a_users_file_at_an_output_path_is_kept_and_the_image_fails(model, png, tmp_path, name):  # noqa: F811
    out = tmp_path / "out"
    image, other = png(tmp_path / "in" / "a.png"), png(tmp_path / "in" / "b.png", 3)
    mine = out / name
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own file")
    summary = _run(model, [image, other], out)
    assert mine.read_bytes() == b"the user's own file"
    assert summary.explained == ["b"]
    (failure,) = summary.failed
    assert failure["id"] == "a" and "\n" not in failure["error"]
    assert f"{mine} exists and was not written by bowlrp for 'a'" in failure["error"]
    assert "move it away or choose another --out" in failure["error"]
    for path in output_paths(out, "a").values():  # nothing else of a's was written either
        assert path == mine or not path.exists()


def test_a_link_at_an_output_path_is_neither_followed_nor_replaced(model, png, tmp_path):  # noqa: F811
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"a picture of the user's")
    out.mkdir()
    (out / "a_overlay.png").symlink_to(elsewhere)
    summary = _run(model, [png(tmp_path / "in" / "a.png")], out)
    assert (out / "a_overlay.png").is_symlink() and elsewhere.read_bytes() == b"a picture of the user's"
    assert (
        "a_overlay.png is a symbolic link, where bowlrp writes an output of 'a'" in summary.failed[0]["error"]
    )


def test_bowlrps_own_outputs_are_replaced_by_overwrite_and_resumed(model, png, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    image = png(tmp_path / "in" / "a.png")
    assert _run(model, [image], out).explained == ["a"]
    assert _run(model, [image], out).skipped == ["a"]
    assert _run(model, [image], out, overwrite=True).explained == ["a"]
    check_outputs_are_ours(output_paths(out, "a"), "a")  # its own record: no conflict
    with pytest.raises(OutputConflict):
        check_outputs_are_ours(output_paths(out, "a"), "b")  # the record names another image


def test_a_run_killed_between_renames_leaves_a_claim_the_next_run_replaces(model, png, tmp_path):  # noqa: F811
    """publish renames the claim first: files renamed before a kill are named by it."""
    out = tmp_path / "out"
    image = png(tmp_path / "in" / "a.png")
    (item,) = collect_inputs([str(image)])
    paths = output_paths(out, "a")
    out.mkdir()
    claim = {"id": "a", "image": str(image), "run_key": {"model_sha256": "x"}, "complete": False}
    real_replace, renamed = os.replace, []

    def killed_after_two(src, dst):  # the claim and the relevance map land, then the "kill"
        if len(renamed) == 2:
            raise KeyboardInterrupt
        renamed.append(dst)
        real_replace(src, dst)

    os.replace = killed_after_two
    try:
        with pytest.raises(KeyboardInterrupt):
            publish(
                {paths["relevance"]: b"npy", paths["heatmap"]: b"png", paths["json"]: b"{}"},
                claim=(paths["json"], json.dumps(claim).encode()),
            )
    finally:
        os.replace = real_replace
    assert renamed == [paths["json"], paths["relevance"]]
    assert not is_done(out, item, {"model_sha256": "x"})  # a claim is not a result
    with pytest.raises(HeatmapFileError, match="the claim of a run stopped while writing this image"):
        find_heatmaps(out)
    summary = _run(model, [image], out)  # the claimed files are bowlrp's: replaced
    assert summary.explained == ["a"] and not summary.failed
    assert json.loads(paths["json"].read_text())["complete"] is True


@pytest.mark.parametrize("name", ["curves.png", "aopc.csv", "curves.json"])
def test_evaluate_never_replaces_a_users_summary_file(model, png, tmp_path, name):  # noqa: F811
    from bowlrp.evaluation.runner import EvaluationSettings, evaluate_images

    out = tmp_path / "evaluation"  # the default --out of bowlrp-evaluate
    (out / name).parent.mkdir(parents=True)
    (out / name).write_bytes(b"my figure")
    png(tmp_path / "in" / "a.png")
    with pytest.raises(FileExistsError, match=f"{name} exists and was not written by bowlrp-evaluate"):
        evaluate_images(
            tmp_path / "in",
            model,
            methods=["random"],
            settings=EvaluationSettings(steps=2, repeats=1),
            out=out,
            progress=False,
        )
    assert (out / name).read_bytes() == b"my figure"
    assert sorted(p.name for p in out.iterdir()) == [name]  # refused before anything was written


def test_evaluate_replaces_its_own_summary(model, png, tmp_path):  # noqa: F811
    from bowlrp.evaluation.runner import EvaluationSettings, evaluate_images

    out = tmp_path / "evaluation"
    png(tmp_path / "in" / "a.png")
    for _ in range(2):
        run = evaluate_images(
            tmp_path / "in",
            model,
            methods=["random"],
            settings=EvaluationSettings(steps=2, repeats=1),
            out=out,
            progress=False,
        )
        assert len(run.results) == 1
    assert json.loads((out / "curves.json").read_text())["methods"]["random"]["n_images"] == 1
