"""Fuzzing the edges of issue 24, seeded: shared references in model files, crafted fitted
attributes, links and FIFOs inside relevance stores, other programs' files under ``--out``.

Properties, for every case:

- a model file with many references to one array member is refused by the
  allocation budget or loads, in a subprocess under ``RLIMIT_AS = 2 GiB``;
- a model with a corrupted fitted attribute is refused (one line, bowlrp's
  ``ModelFileError``) when it is saved or loaded, or it explains with a finite
  score and a heatmap that conserves it;
- a store with a link or a FIFO anywhere in it is refused with one
  ``StoreError`` line or works, within 20 s (no hang), and nothing outside the
  store (a sentinel folder the links point to) is changed or created;
- a run into a folder full of other programs' files (temporaries named like
  bowlrp's, files at output paths, links) never changes or removes one of them.

The default run keeps a fast subset; ``-m slow`` runs the full set.
``BOWLRP_FUZZ_SEED`` changes the seed (default 0), as in ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from bowlrp.exceptions import BowlrpError, ModelFileError
from bowlrp.model_files import load, save
from bowlrp.runs.folder import explain_to_folder
from bowlrp.runs.inputs import collect_inputs
from bowlrp.runs.store import RelevanceStore, StoreError, store_lock, sweep_partial_writes

from .limited import GIB, run_limited
from .test_model_files import _data
from .test_safety_fitted_attributes import files  # noqa: F401 - fixture
from .test_safety_store_links import _Explanation, _item

SEED = int(os.environ.get("BOWLRP_FUZZ_SEED", "0"))
ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"references": (6, 40), "fitted": (100, 1000), "store": (80, 600), "out": (10, 60)}


def counts(kind):
    fast, full = COUNTS[kind]
    return [pytest.param(fast, id="fast"), pytest.param(full, id="full", marks=pytest.mark.slow)]


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


# -- shared references --------------------------------------------------------------------------
REFERENCES_CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    from bowlrp.exceptions import ModelFileError
    from bowlrp.model_files import load, model_info
    from tests import hostile
    valid, n, seed, tmp = open(sys.argv[1], "rb").read(), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = np.random.default_rng([seed, 24, 6])
    outcome = {"loaded": 0, "refused": 0, "other": []}
    for k in range(n):
        refs = int(rng.choice([2, 50, 500, 3000, 20000, 100000]))
        member = int(rng.choice([1_000, 30_000, 300_000, 3_000_000]))
        path = f"{tmp}/r{k}.pkl"
        with open(path, "wb") as fh:
            fh.write(hostile.shared_references(valid, refs, member))
        for fn in (model_info, load):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fn(path)
                    outcome["loaded"] += 1
                except ModelFileError as exc:
                    ok = "\\n" not in str(exc) and path in str(exc)
                    outcome["refused" if ok else "other"] += 1 if ok else 0
                    if not ok:
                        outcome["other"].append([k, refs, member, fn.__name__, str(exc)[:200]])
                except BaseException as exc:
                    name = type(exc).__name__
                    outcome["other"].append([k, refs, member, fn.__name__, name, str(exc)[:200]])
    print(json.dumps(outcome))
    """
)


@pytest.mark.parametrize("n", counts("references"))
def test_fuzz_shared_references_under_2_gib(n, files, tmp_path):  # noqa: F811
    result = run_limited(
        ["-c", REFERENCES_CHILD, str(files["bow"]), str(n), str(SEED), str(tmp_path)],
        limit=2 * GIB,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["other"] == [], outcome["other"]
    assert outcome["refused"] > 0 and outcome["loaded"] + outcome["refused"] == 2 * n
    assert result.peak_rss < 2 * GIB


# -- crafted fitted attributes ------------------------------------------------------------------
def _fitted_arrays(obj, path="model", seen=None, depth=0):
    """(owner, name, path) of every fitted attribute (name ending in ``_``) of bowlrp's objects."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return []
    seen.add(id(obj))
    out = []
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            out += _fitted_arrays(item, f"{path}[{i}]", seen, depth + 1)
        return out
    if not type(obj).__module__.startswith("bowlrp") or not hasattr(obj, "__dict__"):
        return out
    for name, value in vars(obj).items():
        if name.endswith("_") and not name.startswith("_"):
            out.append((obj, name, f"{path}.{name}"))
        out += _fitted_arrays(value, f"{path}.{name}", seen, depth + 1)
    return out


def _corrupt(rng, value):
    """A corrupted copy of a fitted attribute's value, and what was done."""
    if isinstance(value, np.ndarray) and value.size and value.dtype.kind in "fiub":
        a = value.copy()
        op = [
            "nan",
            "inf",
            "negate",
            "huge",
            "drop-row",
            "add-axis",
            "empty",
            "int8",
            "transpose",
            "zero",
        ][rng.integers(10)]
        index = tuple(int(rng.integers(s)) for s in a.shape)
        if op in ("nan", "inf", "huge", "negate", "zero"):
            a = a.astype(np.float64) if a.dtype.kind != "f" else a
            a[index] = {"nan": np.nan, "inf": np.inf, "huge": 1e300, "zero": 0.0}.get(op, -abs(a[index]) - 1)
        elif op == "drop-row":
            a = a[:-1]
        elif op == "add-axis":
            a = a[None]
        elif op == "empty":
            a = a[:0]
        elif op == "int8":
            a = a.astype(np.int8)
        else:
            a = a.T.copy()
        return a, op
    choices = [-1, 0, 10**12, 1.5, None, "x", (), (20000, 20000), float("nan")]
    k = int(rng.integers(len(choices)))
    return choices[k], f"set {choices[k]!r}"


def _image_for(model, rgb: bool):
    images, _ = _data()
    image = images[0]
    return np.dstack([image] * 3) if rgb else image


@pytest.mark.parametrize("n", counts("fitted"))
def test_fuzz_fitted_attributes(n, files, tmp_path):  # noqa: F811
    rng = np.random.default_rng([SEED, 24, 7])
    kinds = sorted(files)
    refused = explained = 0
    for k in range(n):
        kind = kinds[rng.integers(len(kinds))]
        model = load(files[kind])
        targets = _fitted_arrays(model)
        owner, name, where = targets[rng.integers(len(targets))]
        value, op = _corrupt(rng, getattr(owner, name))
        setattr(owner, name, value)
        case = f"case {k}: {kind} {where} {op}"
        path = tmp_path / f"f{k}.pkl"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                save(model, path)
                loaded = load(path)
            except ModelFileError as exc:
                _one_line(exc)
                refused += 1
                continue
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"{case}: {type(exc).__name__}: {exc}")
            try:
                (e,) = loaded.explain([_image_for(loaded, kind == "mkl")])
            except BowlrpError as exc:
                _one_line(exc)
                refused += 1
                continue
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"{case}: loaded, then explain raised {type(exc).__name__}: {exc}")
        assert math.isfinite(e.score) and np.isfinite(e.heatmap).all(), case
        total = e.heatmap.sum() + e.bias_relevance + e.residual + getattr(e, "absorbed", 0.0)
        assert np.isclose(total, e.score, rtol=1e-6, atol=1e-6 * max(1.0, abs(e.score))), (
            case,
            total,
            e.score,
        )
        explained += 1
        path.unlink(missing_ok=True)
    assert refused > 0 and refused + explained == n


# -- links and FIFOs inside stores --------------------------------------------------------------
def _tree_digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links not followed) with its content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "dir"
    return out


def _store_entries(store: Path) -> list[Path]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(store):
        entries += [Path(dirpath) / n for n in dirnames + filenames]
    return sorted(entries)


def _plant(rng, store: Path, sentinel: Path) -> str:
    entries = [p for p in _store_entries(store) if p.name != ".bowlrp.lock"]
    victim = entries[rng.integers(len(entries))]
    how = ["link-to-sentinel", "link-to-sentinel-file", "fifo", "dangling-link", "link-to-dev-zero"][
        rng.integers(5)
    ]
    if victim.is_dir():
        import shutil

        shutil.rmtree(victim)
    else:
        victim.unlink()
    if how == "link-to-sentinel":
        victim.symlink_to(sentinel, target_is_directory=True)
    elif how == "link-to-sentinel-file":
        victim.symlink_to(sentinel / "notes.txt")
    elif how == "fifo":
        os.mkfifo(victim)
    elif how == "dangling-link":
        victim.symlink_to(sentinel / "nothing-here")
    else:
        victim.symlink_to("/dev/zero")
    return f"{how} at {victim.relative_to(store)}"


def _operate(rng, store: Path) -> str:
    import bowlrp.runs.store as relevance_store

    op = ["read-all", "pooled", "write", "overwrite", "sweep", "failure"][rng.integers(6)]
    if op in ("read-all", "pooled"):
        st = relevance_store.open(store)
        if op == "pooled":
            st.pooled_maps()
        else:
            for image_id in st.ids():
                st[image_id]
            st.failures()
    elif op == "sweep":
        sweep_partial_writes(store)
    else:
        with store_lock(store, "fuzz"):
            st = RelevanceStore.create(store, {"m": 1}, overwrite=op == "overwrite")
            image_id = ["x", "y", "new", "Documents"][rng.integers(4)]
            if op == "failure":
                st.write_failure(_item(image_id), "boom")
            else:
                st.write(_item(image_id), [_Explanation()], model_hash="h")
    return op


def _within(seconds: float, fn):
    """Run ``fn`` in a daemon thread; ("hang", None) if it has not finished in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return "hang", None
    return box.get("value"), box.get("error")


@pytest.mark.parametrize("n", counts("store"))
def test_fuzz_links_and_fifos_inside_stores(n, tmp_path):
    rng = np.random.default_rng([SEED, 24, 8])
    sentinel = tmp_path / "home"
    (sentinel / "Documents").mkdir(parents=True)
    (sentinel / "notes.txt").write_text("the user's notes")
    (sentinel / "Documents" / "thesis.tex").write_text("chapter 1")
    before = _tree_digest(sentinel)
    outside_before = sorted(os.listdir(tmp_path))
    refused = worked = 0
    for k in range(n):
        store = tmp_path / f"s{k}.zarr"
        with store_lock(store, "test"):
            st = RelevanceStore.create(store, {"m": 1})
            for image_id in ("x", "y"):
                st.write(_item(image_id), [_Explanation()], model_hash="h")
            st.write_failure(_item("z"), "it failed")
        planted = _plant(rng, store, sentinel)
        op, error = _within(20, lambda store=store: _operate(rng, store))
        case = f"case {k}: {planted}, {op}"
        assert op != "hang", f"case {k}: {planted}: hung"
        if error is not None:
            assert isinstance(error, (StoreError, BowlrpError)), f"{case}: {type(error).__name__}: {error}"
            _one_line(error)
            refused += 1
        else:
            worked += 1
        assert _tree_digest(sentinel) == before, case
    assert sorted(n for n in os.listdir(tmp_path) if not n.endswith(".zarr")) == [
        n for n in outside_before if not n.endswith(".zarr")
    ]
    assert refused > 0 and refused + worked == n


# -- other programs' files under --out ----------------------------------------------------------
_FOREIGN_NAMES = [
    ".chapter3.tex.tmp",
    ".a.json.tmp",
    ".a.json.k3j9x2qa.tmp",
    ".zz.json.bowlrp-k3j9x2qa.tmp",  # bowlrp's pattern, but of no file this run writes
    ".a_overlay.png.bowlrp-.tmp",
    "a.json",
    "a_overlay.png",
    "a_heatmap.png",
    "a_relevance.npy",
    "b.json",
    "run.json.bak",
    "sub/.x.tmp",
    "sub/c.json",
    "notes.txt",
    ".bowlrp.lock.old",
    "a.json.partial",
    ".zarr.json.0123456789abcdef0123456789abcdef.partial",
]


def _user_tree(rng, out: Path, outside: Path) -> None:
    chosen = rng.choice(len(_FOREIGN_NAMES), size=int(rng.integers(3, 9)), replace=False)
    for i in chosen:
        path = out / _FOREIGN_NAMES[i]
        path.parent.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.25:
            path.symlink_to(outside)
        else:
            path.write_bytes(f"the user's {path.name}".encode())


@pytest.mark.parametrize("n", counts("out"))
def test_fuzz_other_programs_files_under_out_are_never_touched(n, files, tmp_path):  # noqa: F811
    model = load(files["bow"])
    images, _ = _data()
    import cv2

    inputs_dir = tmp_path / "in"
    (inputs_dir / "sub").mkdir(parents=True)
    for name, image in (("a", images[0]), ("b", images[6]), ("sub/c", images[2])):
        cv2.imwrite(str(inputs_dir / f"{name}.png"), (image * 255).astype(np.uint8))
    inputs = collect_inputs([str(inputs_dir)])
    outside = tmp_path / "outside.txt"
    outside.write_text("a file of the user's elsewhere")
    rng = np.random.default_rng([SEED, 24, 9])
    explained = 0
    for k in range(n):
        out = tmp_path / f"out{k}"
        _user_tree(rng, out, outside)
        before = _tree_digest(out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = explain_to_folder(model, inputs, out, run_key={"model_sha256": "x"}, progress=False)
        after = _tree_digest(out)
        for path, digest in before.items():
            assert after.get(path) == digest, (k, path, sorted(before))
        for failure in summary.failed:
            assert (
                "\n" not in failure["error"]
                and "not written by bowlrp" in failure["error"]
                or ("symbolic link" in failure["error"])
            ), failure
        assert len(summary.explained) + len(summary.failed) == len(inputs)
        explained += len(summary.explained)
        assert outside.read_text() == "a file of the user's elsewhere"
    assert explained > 0  # the images without a foreign file at their outputs were explained
