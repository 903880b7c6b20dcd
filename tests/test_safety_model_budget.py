"""Issue 24, findings 6, 17 and part of 14: what loading a model file allocates, lying metadata,
and an unreadable ``BOWLRP_MAX_MODEL_BYTES``. Each test fails on 4269499 (``bowlrp.io``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bowlrp import HardAssignment, KernelSVC, Pipeline
from bowlrp.descriptors.sift import DenseSIFT
from bowlrp.exceptions import ModelFileError
from bowlrp.model_files import load, model_info, save

from . import hostile
from .conftest import blobs, stripes
from .limited import GIB, run_limited

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    images = [stripes(rng, 40) for _ in range(5)] + [blobs(rng, 40) for _ in range(5)]
    y = np.array(["stripes"] * 5 + ["blobs"] * 5)
    sift = DenseSIFT(bin_sizes=[4], steps=4, backend="opencv")
    model = Pipeline([("s", sift, HardAssignment(8, random_state=0))], KernelSVC("hik"), random_state=0)
    return save(model.fit(images, y), tmp_path_factory.mktemp("budget") / "valid.pkl")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _refused(fn, path: Path, match: str) -> str:
    with pytest.raises(ModelFileError, match=match) as err:
        fn(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


# -- finding 6: members read many times ----------------------------------------------------------
def test_shared_references_are_refused_before_skops_runs(valid, tmp_path):
    p = _write(tmp_path, "shared.pkl", hostile.shared_references(valid.read_bytes(), 3000, 300_000))
    assert p.stat().st_size < 400_000  # a small file ...
    for fn in (model_info, load):  # 4269499: model_info accepted it, load took 2 GB
        msg = _refused(fn, p, "would allocate")
        assert "3,0" in msg and "array reads" in msg and "MAX_EXPANSION" in msg, msg
        estimate = int(msg.split("about ")[1].split(" bytes")[0].replace(",", ""))
        assert estimate > 3000 * 2 * 300_000  # ... every reference counted: member + array


def test_the_allocation_estimate_honours_max_bytes(valid, tmp_path):
    """A genuine file whose arrays need more than ``max_bytes`` is refused, naming how to raise it."""
    size = valid.stat().st_size
    limit = size + 20_000  # the file and its members fit, building its arrays does not
    for fn in (model_info, load):
        with pytest.raises(ModelFileError, match="would allocate") as err:
            fn(valid, max_bytes=limit)
        assert "max_bytes=" in str(err.value) and "BOWLRP_MAX_MODEL_BYTES" in str(err.value)
    assert model_info(valid, max_bytes=3 * size)["kind"] == "Pipeline"
    assert hasattr(load(valid, max_bytes=3 * size), "explain")


def test_an_npy_header_declaring_more_than_its_member_holds_is_refused(valid, tmp_path):
    p = _write(tmp_path, "liar.pkl", hostile.lying_npy(valid.read_bytes()))
    for fn in (model_info, load):
        _refused(fn, p, r"declares shape \(137438953472,\).*holds 64")


def test_shared_references_are_refused_with_little_memory(valid, tmp_path):
    """4269499: 3,000 references peaked at 1,984 MB, 20,000 ran out of memory under 3 GiB."""
    small = _write(tmp_path, "s3000.pkl", hostile.shared_references(valid.read_bytes(), 3000))
    large = _write(tmp_path, "s20000.pkl", hostile.shared_references(valid.read_bytes(), 20_000))
    code = (
        "import sys\nfrom bowlrp.model_files import load, model_info\n"
        "print(type(load(sys.argv[1])).__name__)\n"
        "for p in sys.argv[2:]:\n"
        "    for fn in (model_info, load):\n"
        "        try:\n            fn(p)\n            print('accepted')\n"
        "        except Exception as e:\n            print(type(e).__name__, str(e)[:120])\n"
    )
    r = run_limited(["-c", code, str(valid), str(small), str(large)], limit=GIB, timeout=300, cwd=ROOT)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0] == "Pipeline", r.stderr[-2000:]
    assert len(lines) == 5 and all("would allocate" in line for line in lines[1:]), r.stdout
    assert r.peak_rss < 600 << 20, r.peak_rss  # the genuine model and the refusals: a few hundred MB


# -- finding 17: metadata that lies ---------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, match",
    [
        ("classes", ["cat", "dog"], "metadata says classes"),
        ("classes", None, "metadata says classes"),
        ("config", {"name": "voc_horse_fisher"}, "metadata says config"),
        ("kind", "KernelSVC", "metadata says kind"),
        ("bowlrp_version", "0.1.0", "metadata says bowlrp_version"),
    ],
)
def test_metadata_that_does_not_describe_the_model_is_refused_by_load(valid, tmp_path, field, value, match):
    def lie(meta):
        meta[field] = value

    p = _write(tmp_path, "lie.pkl", hostile.rewrite(valid.read_bytes(), meta_edit=lie))
    assert model_info(p)[field] == value  # model_info reads metadata only: load is where it is checked
    _refused(load, p, match)


@pytest.mark.parametrize("version", [999, 0, "1", True, None, 1.5])
def test_an_unknown_format_version_is_refused_by_model_info_and_load(valid, tmp_path, version):
    def edit(meta):
        if version is None:
            del meta["format_version"]
        else:
            meta["format_version"] = version

    p = _write(tmp_path, "v.pkl", hostile.rewrite(valid.read_bytes(), meta_edit=edit))
    for fn in (model_info, load):
        msg = _refused(fn, p, "format version")
        assert "reads version 1" in msg, msg
    _refused(lambda q: model_info(q, verify=False), p, "format version")


def test_the_genuine_metadata_still_matches(valid):
    info = model_info(valid)
    assert info["format_version"] == 1 and info["classes"] == ["blobs", "stripes"]
    assert load(valid).classes_.tolist() == info["classes"]


# -- finding 14: BOWLRP_MAX_MODEL_BYTES=lots -------------------------------------------------------
def _python(code: str, *args: str, value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BOWLRP_MAX_MODEL_BYTES": value}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


@pytest.mark.parametrize("value", ["lots", "inf", "-5", "1e400"])
def test_an_unreadable_limit_is_one_line_when_used_not_a_traceback_at_import(valid, value):
    code = (
        "import sys\nimport bowlrp\nfrom bowlrp.model_files import load, model_info\n"
        "print('imported')\n"
        "print(type(load(sys.argv[1], max_bytes=1 << 30)).__name__)\n"  # an explicit limit is enough
        "for fn in (load, model_info):\n"
        "    try:\n        fn(sys.argv[1])\n        print('accepted')\n"
        "    except bowlrp.exceptions.ModelFileError as e:\n        print(e)\n"
    )
    r = _python(code, str(valid), value=value)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[:2] == ["imported", "Pipeline"], r.stdout
    for line in lines[2:]:
        assert f"BOWLRP_MAX_MODEL_BYTES={value!r}" in line and "expected a positive whole number" in line
        assert str(valid) in line
    assert len(lines) == 4


def test_a_readable_limit_from_the_environment_applies(valid):
    code = (
        "import sys\nfrom bowlrp.model_files import load\n"
        "try:\n    load(sys.argv[1])\nexcept Exception as e:\n    print(e)\n"
    )
    r = _python(code, str(valid), value="1000")
    assert "above the model file limit of 1,000" in r.stdout, (r.stdout, r.stderr[-2000:])
    r = _python(code.replace("print(e)", "print('no')") + "else:\n    print('ok')\n", str(valid), value="1e9")
    assert r.stdout.strip() == "ok", r.stderr[-2000:]


def test_metadata_is_json_the_builders_can_edit(valid):
    """The builders above rewrite ``bowlrp.json``; guard against a format change hiding them."""
    meta = json.loads(zipfile.ZipFile(valid).read("bowlrp.json"))
    assert {"format_version", "classes", "config", "kind", "bowlrp_version"} <= set(meta)
