"""Model files: exact type allowlist, metadata without loading, size/hash checks, hostile corpus."""

import json
import os
import subprocess
import sys
import unittest.mock
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bowlrp import (
    ColorQuantiles,
    DenseSIFT,
    FisherVector,
    GMMVocabulary,
    HardAssignment,
    KMeansVocabulary,
    RankMapping,
    SoftAssignment,
)
from bowlrp.classifier.svm import KernelSVC
from bowlrp.exceptions import ModelFileError
from bowlrp.model_files import ALLOWED_TYPES, load, model_info, save
from bowlrp.pipeline import Pipeline

from . import hostile
from .conftest import blobs, stripes


def _data(n=5, size=40):
    rng = np.random.default_rng(1)
    images = [stripes(rng, size) for _ in range(n)] + [blobs(rng, size) for _ in range(n)]
    return images, np.array(["stripes"] * n + ["blobs"] * n)


def _sift():
    return DenseSIFT(bin_sizes=[4], steps=4, backend="opencv")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    images, y = _data()
    model = Pipeline(
        [("s", _sift(), HardAssignment(8, random_state=0))], KernelSVC("hik"), random_state=0
    ).fit(images, y)
    path = tmp_path_factory.mktemp("model") / "tiny.pkl"
    save(model, path)
    return model, path, images


def _model_kinds():
    """Every kind of model bowlrp builds, small (name, unfitted pipeline, colour input?)."""
    kinds = []
    encoders = {
        "kmeans-hard": HardAssignment(8, random_state=0),
        "kmeans-pca-rank": RankMapping(KMeansVocabulary(8, pca_components=8, random_state=0)),
        "soft": SoftAssignment(8, n_nearest=3, random_state=0),
        "gmm-fisher": FisherVector(4, random_state=0),
        "gmm-pca-fisher-pyramid": FisherVector(
            GMMVocabulary(4, pca_components=8, random_state=0), pyramid=[[1, 1], [2, 2]]
        ),
    }
    for name, enc in encoders.items():
        kernel = "linear" if isinstance(enc, FisherVector) else "hik"
        kinds.append((name, Pipeline([("s", _sift(), enc)], KernelSVC(kernel), random_state=0), False))
    for kernel in ("chi2", "exp_chi2", "rbf", "hellinger"):
        kinds.append(
            (
                f"kernel-{kernel}",
                Pipeline(
                    [("s", _sift(), HardAssignment(8, random_state=0))], KernelSVC(kernel), random_state=0
                ),
                False,
            )
        )
    kinds.append(
        (
            "mkl-two-channels-class-weight",
            Pipeline(
                [
                    ("s", _sift(), HardAssignment(8, random_state=0)),
                    ("q", ColorQuantiles(radius=4, step=4), RankMapping(8, random_state=0)),
                ],
                KernelSVC(["hik", "exp_chi2"], mkl_norm=2, class_weight={"blobs": 1.0, "stripes": 2.0}),
                random_state=0,
            ),
            True,
        )
    )
    kinds.append(
        (
            "random-state-object",
            Pipeline(
                [("s", _sift(), HardAssignment(8, random_state=np.random.RandomState(0)))],
                KernelSVC("hik", random_state=np.random.RandomState(1)),
                random_state=0,
            ),
            False,
        )
    )
    return kinds


def _shrunk_config(name):
    from bowlrp.config import load_config

    cfg = load_config(f"configs/{name}.yaml")

    def shrink(d):
        if isinstance(d, dict):
            for k, v in list(d.items()):
                if k in ("n_words", "n_components"):
                    d[k] = 4
                elif k == "pca_components":
                    d[k] = 8
                elif k == "bin_sizes":
                    d[k] = [4]
                elif k == "backend" and v == "auto":
                    d[k] = "opencv"
                else:
                    shrink(v)
        elif isinstance(d, list):
            for v in d:
                shrink(v)

    shrink(cfg)
    for ch in cfg["channels"]:
        if "DenseSIFT" in ch["extractor"]:
            ch["extractor"]["DenseSIFT"]["backend"] = "opencv"
    return cfg


def test_every_registered_class_is_allowed():
    from bowlrp.classifier.anomaly import KernelSVDD, OneClassKernelSVM
    from bowlrp.config import REGISTRY

    for cls in [*REGISTRY.values(), Pipeline, OneClassKernelSVM, KernelSVDD]:
        assert f"{cls.__module__}.{cls.__qualname__}" in ALLOWED_TYPES, cls
    # exact names only: no prefix-like entry, no function or callable-with-arguments loader
    for name, loaders in ALLOWED_TYPES.items():
        assert not name.endswith(".") and "*" not in name
        assert not loaders & {
            "FunctionNode",
            "ConstructorFromReduceNode",
            "ReduceNode",
            "MethodNode",
            "PartialNode",
            "OperatorFuncNode",
        }, name


FAST_KINDS = ("gmm-pca-fisher-pyramid", "mkl-two-channels-class-weight", "config-voc2009_bow")


def _all_kinds():
    kinds = _model_kinds()
    for cfg_name in ("polygons_hik", "polygons_chi2", "voc2009_bow", "voc_fisher"):
        kinds.append((f"config-{cfg_name}", Pipeline.from_config(_shrunk_config(cfg_name)), True))
    return kinds


def test_a_save_of_some_model_kinds_passes_the_allowlist(tmp_path):
    _check_kinds([k for k in _all_kinds() if k[0] in FAST_KINDS], tmp_path)


@pytest.mark.slow
def test_a_save_of_every_model_kind_passes_the_allowlist(tmp_path):
    seen = _check_kinds(_all_kinds(), tmp_path)
    # the list holds nothing bowlrp does not write (the scalar types come from fitted attributes
    # of other estimators and class_weight dicts, checked in test_scalar_types_in_the_list_round_trip)
    # (the anomaly detectors are saved and loaded without trusted= in
    # tests/test_anomaly_pipeline.py::test_save_load_round_trip)
    extra = (
        set(ALLOWED_TYPES)
        - seen
        - {
            "builtins.float",
            "numpy.float32",
            "numpy.int64",
            "numpy.int32",
            "numpy.bool",
            "builtins.int",
            "bowlrp.classifier.anomaly.OneClassKernelSVM",
            "bowlrp.classifier.anomaly.KernelSVDD",
            "bowlrp.encoding.local_pooling.TailFisherVector",  # saved in tests/test_anomaly_pooling.py
        }
    )
    assert not extra, extra


def _check_kinds(kinds, tmp_path):
    images, y = _data()
    colour = [np.dstack([im] * 3) for im in images]
    seen = set()
    for name, pipe, rgb in kinds:
        X = colour if rgb else images
        pipe.fit(X, y)
        path = save(pipe, tmp_path / f"{name}.pkl")
        with zipfile.ZipFile(path) as z:
            found = hostile_types(json.loads(z.read("schema.json")))
        unlisted = {t for loader, t in found if loader not in ALLOWED_TYPES.get(t, ())}
        assert not unlisted, (name, unlisted)
        seen |= {t for _, t in found}
        back = load(path)  # no trusted=: the allowlist alone suffices
        np.testing.assert_array_equal(back.decision_function(X[:3]), pipe.decision_function(X[:3]))
        info = model_info(path)
        assert info["kind"] == "Pipeline" and sorted(info["classes"]) == ["blobs", "stripes"]
    return seen


def test_scalar_types_in_the_list_round_trip(tmp_path):
    import skops.io as sio

    obj = {"a": np.int64(3), "b": np.float32(2), "c": np.bool_(True), "d": np.int32(1), 1: 2, 2.0: 3}
    found = hostile_types(
        json.loads(zipfile.ZipFile(__import__("io").BytesIO(sio.dumps(obj))).read("schema.json"))
    )
    assert all(loader in ALLOWED_TYPES[t] for loader, t in found), found


def hostile_types(schema):
    out, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                out.add((node["__loader__"], f"{node['__module__']}.{node['__class__']}"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def test_round_trip_metadata_and_permissions(tiny, tmp_path):
    model, path, images = tiny
    info = model_info(path)
    assert info["format"] == "bowlrp-model" and info["kind"] == "Pipeline"
    assert sorted(info["classes"]) == ["blobs", "stripes"] and len(info["sha256"]) == 64
    # model_info constructs nothing: it works with skops' loader disabled
    with unittest.mock.patch("skops.io.load", side_effect=AssertionError("constructed")):
        assert model_info(path)["kind"] == "Pipeline"
    old = os.umask(0o022)
    try:
        p1 = save(model, tmp_path / "a.pkl")
        os.umask(0o077)
        p2 = save(model, tmp_path / "b.pkl")
    finally:
        os.umask(old)
    assert p1.stat().st_mode & 0o777 == 0o644  # mkstemp alone gave 0600 (70b130f)
    assert p2.stat().st_mode & 0o777 == 0o600
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.pkl", "b.pkl"]  # no temporary left


def test_trusted_list_and_true(tiny, tmp_path):
    _, path, _ = tiny
    node = {
        "__class__": "OrderedDict",
        "__module__": "collections",
        "__loader__": "DictNode",
        "content": {},
        "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []},
    }
    f = tmp_path / "od.pkl"
    f.write_bytes(hostile.inject(path.read_bytes(), node))
    with pytest.raises(ModelFileError, match="collections.OrderedDict") as err:
        load(f)
    assert "--trust collections.OrderedDict" in str(err.value) and str(f) in str(err.value)
    with pytest.raises(ModelFileError, match="collections.OrderedDict"):
        model_info(f)
    assert model_info(f, trusted=["collections.OrderedDict"])["kind"] == "Pipeline"
    assert hasattr(load(f, trusted=["collections.OrderedDict"]), "explain")
    assert hasattr(load(f, trusted="collections.OrderedDict"), "explain")
    with pytest.warns(UserWarning, match="trusting every type"):
        assert hasattr(load(f, trusted=True), "explain")
    # a list never unpickles
    pkl = tmp_path / "p.pkl"
    import pickle

    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="pickle"):
        load(pkl, trusted=["builtins.dict"])


def test_size_limits(tiny, tmp_path, monkeypatch):
    _, path, _ = tiny
    size = path.stat().st_size
    with pytest.raises(ModelFileError, match="above the model file limit"):
        load(path, max_bytes=size - 1)
    with pytest.raises(ModelFileError, match="above the model file limit"):
        model_info(path, max_bytes=size - 1)
    from bowlrp.model_files import _env_bytes

    monkeypatch.setenv("BOWLRP_MAX_MODEL_BYTES", "12345")
    assert _env_bytes("BOWLRP_MAX_MODEL_BYTES", 1) == 12345
    monkeypatch.setenv("BOWLRP_MAX_MODEL_BYTES", "lots")
    with pytest.raises(ModelFileError, match="BOWLRP_MAX_MODEL_BYTES"):
        _env_bytes("BOWLRP_MAX_MODEL_BYTES", 1)


@pytest.fixture(scope="module")
def corpus(tiny, tmp_path_factory):
    return _sentinel_corpus(tiny, tmp_path_factory.mktemp("corpus"))


def _sentinel_corpus(tiny, tmp_path):
    _, path, _ = tiny
    sentinel = tmp_path / "SENTINEL"
    files = hostile.corpus(path.read_bytes(), sentinel, tmp_path)
    paths = {}
    for i, (name, data) in enumerate(files.items()):
        p = tmp_path / f"bad{i:02d}.pkl"
        p.write_bytes(data)
        paths[name] = p
    return sentinel, paths


def test_hostile_corpus_is_refused_by_load_and_model_info(corpus):
    sentinel, paths = corpus
    assert len(paths) >= 30
    for name, p in paths.items():
        for fn in (load, model_info):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with pytest.raises(ModelFileError) as err:
                    fn(p)
            msg = str(err.value)
            assert "\n" not in msg and str(p) in msg, (name, msg)
            assert not sentinel.exists(), name
    # code-running payloads are named by type in the refusal
    for name in hostile.LIVE:
        if "." in name:
            with pytest.raises(ModelFileError, match=name.replace(".", r"\.")):
                load(paths[f"inject {name}"])


@pytest.mark.slow
def test_the_corpus_is_live(tiny, tmp_path):
    """Each code-running payload does run when skops is told to trust it (so refusing it matters)."""
    _, path, _ = tiny
    script = r"""
import sys, pathlib, skops.io as sio
sys.path.insert(0, sys.argv[1])
from tests import hostile
tmp = pathlib.Path(sys.argv[2])
ran = []
for name in hostile.LIVE:
    sentinel = tmp / ("s_" + name.replace(" ", "_"))
    node = hostile.payloads(sentinel, tmp)[name]
    data = hostile.plain_skops(node)
    try:
        sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    except Exception as exc:
        pass
    ran.append(sentinel.exists())
print(sum(ran), len(ran))
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", script, root, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.stdout.split() == [str(len(hostile.LIVE))] * 2, out.stdout + out.stderr


def test_old_prefix_rule_would_have_run_code(tiny, tmp_path):
    """On 70b130f `builtins.*`/`numpy.*` were trusted by prefix: exec, open and savetxt ran."""
    _, path, _ = tiny
    sentinel = tmp_path / "S"
    for name in ("builtins.exec", "builtins.open", "numpy.savetxt"):
        f = tmp_path / "x.pkl"
        f.write_bytes(hostile.inject(path.read_bytes(), hostile.payloads(sentinel, tmp_path)[name]))
        with pytest.raises(ModelFileError, match=name.replace(".", r"\.")):
            load(f)
        assert not sentinel.exists()


@pytest.mark.parametrize(
    "case",
    [
        "inject builtins.exec",
        *[
            pytest.param(c, marks=pytest.mark.slow)
            for c in (
                "zip bomb (64 MiB of zeros)",
                "inject posix.system",
                "truncated zip",
                "wrong stored member hash",
                "sklearn estimator (other library)",
                "inject numpy.load",
                "declared 4.3 GB member",
            )
        ],
    ],
)
def test_cli_refuses_hostile_model_in_one_line(case, tiny, corpus, tmp_path):
    import cv2

    sentinel, paths = corpus
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), (tiny[2][0] * 255).astype(np.uint8))
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "bowlrp.explain", "-i", str(img), "-m", str(paths[case]), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(paths[case]) in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not sentinel.exists()
    assert not out.exists() or not list(out.iterdir())


def test_cli_refuses_every_hostile_model_in_process(tiny, corpus, tmp_path, capsys):
    import cv2

    from bowlrp.explain import main

    sentinel, paths = corpus
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), (tiny[2][0] * 255).astype(np.uint8))
    for name, p in paths.items():
        code = main(["-i", str(img), "-m", str(p), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and str(p) in err, (name, err)
        assert not sentinel.exists(), name


def test_zip_bombs_are_refused_by_their_sizes_under_2_gib(corpus):
    """70b130f: a zip-bomb model file took 4.3 GB (every member was decompressed to audit types)."""
    from .limited import GIB, run_limited

    sentinel, paths = corpus
    bombs = [paths["zip bomb (64 MiB of zeros)"], paths["declared 4.3 GB member"]]
    for p in bombs:
        with pytest.raises(ModelFileError, match="zip bomb"):
            load(p)
        with pytest.raises(ModelFileError, match="zip bomb"):
            model_info(p)
    code = (
        "import sys\nfrom bowlrp.model_files import load\nfor p in sys.argv[1:]:\n"
        "    try:\n        load(p)\n"
        "    except Exception as e:\n        print(type(e).__name__)\n"
    )
    r = run_limited(["-c", code, *map(str, bombs)], limit=2 * GIB, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["ModelFileError"] * 2, r.stderr
    assert r.peak_rss < 2 * GIB


def test_files_from_0_1_0_without_metadata_load_only_when_trusted(tiny, tmp_path):
    import skops.io as sio

    from bowlrp import __version__

    model, _, images = tiny
    old = tmp_path / "old.pkl"
    sio.dump(
        {
            "format": "bowlrp-model",
            "bowlrp_version": __version__,
            "kind": "Pipeline",
            "config": None,
            "model": model,
        },
        str(old),
    )
    with pytest.raises(ModelFileError, match="no bowlrp.json metadata"):
        load(old)
    with pytest.warns(UserWarning, match="trusting every type"):
        back = load(old, trusted=True)
    new = save(back, tmp_path / "new.pkl")  # the migration path
    np.testing.assert_array_equal(
        load(new).decision_function(images[:2]), model.decision_function(images[:2])
    )


LEGACY = Path(__file__).parent / "fixtures" / "v0_1_0"


def test_model_files_written_by_0_1_0_load_under_the_new_layout():
    """Files saved by bowlrp 0.1.0 (types named bowlrp.svm.KernelSVC, bowlrp.vocabulary...) load
    without trust, give the same decision values and explanations, and warn about nothing."""
    from bowlrp.classifier import OneClassKernelSVM
    from bowlrp.encoding import GMMVocabulary

    expected = json.loads((LEGACY / "expected.json").read_text())
    images = list(np.load(LEGACY / "images.npy", allow_pickle=False))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"bowlrp\.\S+ moved to", category=DeprecationWarning)
        model = load(LEGACY / "two_channels_mkl.skops")
        detector = load(LEGACY / "one_class.skops")
        info = model_info(LEGACY / "two_channels_mkl.skops")
    assert info["bowlrp_version"] == "0.1.0" and info["kind"] == "Pipeline"
    assert type(model.classifier_) is KernelSVC and type(detector.classifier_) is OneClassKernelSVM
    assert type(model.encoders_[1].vocabulary_) is GMMVocabulary
    np.testing.assert_allclose(model.decision_function(images), expected["decision_function"], rtol=1e-12)
    sums = [float(e.heatmap.sum()) for e in model.explain(images)]
    np.testing.assert_allclose(sums, expected["heatmap_sums"], rtol=1e-9)
    np.testing.assert_allclose(
        detector.decision_function(images), expected["one_class_decision_function"], rtol=1e-9, atol=1e-15
    )
    with pytest.warns(UserWarning, match="unpickling"):
        pickled = load(LEGACY / "two_channels_mkl.pickle", trusted=True)
    np.testing.assert_allclose(pickled.decision_function(images), expected["decision_function"], rtol=1e-12)


def test_a_0_1_0_type_name_is_checked_under_its_new_name(tmp_path):
    """The old name of an allowed type passes only with the loader the new name allows."""
    from bowlrp.model_files import _audit

    assert _audit({("ObjectNode", "bowlrp.svm.KernelSVC")}, frozenset(), tmp_path) == ["bowlrp.svm.KernelSVC"]
    with pytest.raises(ModelFileError, match="bowlrp.svm.KernelSVC"):
        _audit({("MethodNode", "bowlrp.svm.KernelSVC")}, frozenset(), tmp_path)
    with pytest.raises(ModelFileError, match="bowlrp.svm_evil.KernelSVC"):
        _audit({("ObjectNode", "bowlrp.svm_evil.KernelSVC")}, frozenset(), tmp_path)
