"""Fuzzing with a seeded generator: images, model files, VOC XML and command-line arguments.

Every case must end in a result or in bowlrp's own one-line error naming the
file (ImageError, ModelFileError, AnnotationError; exit code 0/1/2 for the
command lines): no other exception, no traceback, no sentinel file created by
a model file, no temporary file left in an output directory, and cases that
declare huge sizes run in a subprocess under ``RLIMIT_AS = 2 GiB`` and must be
refused by a limit (never by running out of memory).

The default run keeps a fast subset (about 250 cases); ``-m slow`` runs the
full set (about 1,800 cases). ``BOWLRP_FUZZ_SEED`` changes the seed (default 0).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import sys
import warnings

import numpy as np
import pytest

from bowlrp._utils.validation import as_float_image, display_path
from bowlrp.datasets.voc_annotations import AnnotationError, AnnotationWarning, read_voc_annotation
from bowlrp.exceptions import ImageError, ModelFileError
from bowlrp.model_files import load, model_info, save

from . import hostile
from . import imagefiles as F
from .limited import GIB, run_limited

SEED = int(os.environ.get("BOWLRP_FUZZ_SEED", "0"))
# (fast, slow) case counts; the slow run includes the fast cases' generators with more draws
COUNTS = {
    "image": (100, 600),
    "bomb": (16, 120),
    "model": (50, 400),
    "xml": (60, 500),
    "cli": (24, 160),
    "cli-subprocess": (1, 16),
}


def counts(kind):
    fast, full = COUNTS[kind]
    return [pytest.param(fast, id="fast"), pytest.param(full, id="full", marks=pytest.mark.slow)]


def _one_line_naming(msg: str, path) -> None:
    assert "\n" not in msg, msg
    assert display_path(path) in msg, (msg, display_path(path))


# -- images -------------------------------------------------------------------------------------
def _mutate_image(rng, k: int) -> tuple[str, bytes]:
    ext = F.FORMATS[rng.integers(len(F.FORMATS))]
    h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
    data = bytearray(F.sample(ext, h, w, seed=k))
    op = ["truncate", "flip", "flip-header", "overwrite-header", "splice", "garbage"][rng.integers(6)]
    if op == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif op in ("flip", "flip-header"):
        span = min(len(data), 64) if op == "flip-header" else len(data)
        for i in rng.integers(0, span, int(rng.integers(1, 17))):
            data[i] ^= 1 << int(rng.integers(8))
    elif op == "overwrite-header":
        pos = int(rng.integers(0, min(len(data), 40)))
        value = int(rng.integers(0, 1 << 16)) if rng.random() < 0.5 else int(rng.integers(0, 60))
        data[pos : pos + 2] = struct.pack("<H", value)
    elif op == "splice":
        other = F.sample(F.FORMATS[rng.integers(len(F.FORMATS))], 30, 30, seed=k + 1)
        cut = int(rng.integers(0, len(data)))
        data = data[:cut] + other[int(rng.integers(0, len(other))) :]
    else:
        data = data[:8] + bytearray(rng.bytes(int(rng.integers(0, 400))))
    return f"{op}{ext}", bytes(data)


def _check_image(path) -> str:
    try:
        x = as_float_image(path)
    except ImageError as exc:
        _one_line_naming(str(exc), path)
        assert "out of memory" not in str(exc)
        return "refused"
    assert x.dtype == np.float64 and (x.ndim == 2 or x.shape[2] == 3)
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    return "read"


@pytest.mark.parametrize("n", counts("image"))
def test_fuzz_images(n, tmp_path):
    rng = np.random.default_rng([SEED, 1])
    outcomes = {}
    for k in range(n):
        desc, data = _mutate_image(rng, k)
        path = tmp_path / f"case{k}{desc[-4:]}"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                outcome = _check_image(path)
            except AssertionError:
                raise
            except Exception as exc:  # anything but ImageError is a finding
                pytest.fail(f"case {k} ({desc}): {type(exc).__name__}: {exc}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        path.unlink()
    assert sum(outcomes.values()) == n and outcomes.get("refused", 0) > 0


def _bomb_cases(rng, n):
    makers = [
        lambda w, h: F.png_bomb(
            w, h, [8, 16][rng.integers(2)], [0, 2, 4, 6][rng.integers(4)], 6000, seed=int(rng.integers(2))
        ),
        lambda w, h: F.jpeg_bomb(min(w, 65535), min(h, 65535)),
        lambda w, h: F.bmp_bomb(min(w, 2**31 - 1), -min(h, 2**31 - 1)),
        lambda w, h: F.tiff_bomb(min(w, 2**32 - 1), min(h, 2**32 - 1)),
        lambda w, h: F.bigtiff_header(w, h),
        lambda w, h: F.webp_bomb(min(w, 1 << 24), min(h, 1 << 24)),
        lambda w, h: F.pnm_bomb(w, h),
    ]
    for k in range(n):
        # dimensions between 8,000 and 2^31 on a side: all above the default 50 Mpx
        w = int(np.exp(rng.uniform(np.log(8000), np.log(2**31 - 1))))
        h = int(np.exp(rng.uniform(np.log(8000), np.log(2**31 - 1))))
        yield k, makers[k % len(makers)](w, h)


@pytest.mark.parametrize("n", counts("bomb"))
def test_fuzz_huge_headers_in_a_subprocess_under_2_gib(n, tmp_path):
    rng = np.random.default_rng([SEED, 2])
    paths = []
    for k, data in _bomb_cases(rng, n):
        paths.append(tmp_path / f"bomb{k}.img")
        paths[-1].write_bytes(data)
    code = (
        "import sys, json\nfrom bowlrp._utils.validation import as_float_image\n"
        "for p in sys.argv[1:]:\n    try:\n        as_float_image(p); r = ['read', '']\n"
        "    except Exception as e:\n        r = [type(e).__name__, str(e)]\n    print(json.dumps(r))\n"
    )
    r = run_limited(["-c", code, *map(str, paths)], limit=2 * GIB, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(results) == n
    for path, (kind, msg) in zip(paths, results):
        assert kind == "ImageError" and "above the limit" in msg, (path, kind, msg)
        _one_line_naming(msg, path)
    assert r.peak_rss < 2 * GIB


# -- model files --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid_model(tmp_path_factory):
    from bowlrp import DenseSIFT, HardAssignment
    from bowlrp.classifier.svm import KernelSVC
    from bowlrp.pipeline import Pipeline

    from .conftest import blobs, stripes

    rng = np.random.default_rng(0)
    images = [stripes(rng, 40) for _ in range(4)] + [blobs(rng, 40) for _ in range(4)]
    y = np.array(["stripes"] * 4 + ["blobs"] * 4)
    model = Pipeline(
        [("s", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), HardAssignment(8, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    ).fit(images, y)
    d = tmp_path_factory.mktemp("fuzzmodel")
    path = save(model, d / "model.pkl")
    img = d / "img.png"
    img.write_bytes(F.encode(".png", (images[0] * 255).astype(np.uint8)))
    return path, img


_POOL_TYPES = [
    ("builtins", "exec"),
    ("posix", "system"),
    ("numpy", "load"),
    ("subprocess", "Popen"),
    ("builtins", "getattr"),
    ("functools", "partial"),
    ("operator", "methodcaller"),
    ("numpy", "ndarray"),
    ("builtins", "dict"),
    ("bowlrp.svm", "KernelSVC"),
    ("sklearn.linear_model._logistic", "LogisticRegression"),
    ("", ""),
    ("a\nb", "c\x00"),
]
_POOL_LOADERS = [
    "ObjectNode",
    "ConstructorFromReduceNode",
    "FunctionNode",
    "TypeNode",
    "MethodNode",
    "ReduceNode",
    "PartialNode",
    "OperatorFuncNode",
    "NdArrayNode",
    "DictNode",
    "NoSuchNode",
]


def _nodes(schema):
    out, stack = [], [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                out.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def _mutate_model(rng, valid: bytes, sentinel, tmp) -> tuple[str, bytes]:
    op = [
        "truncate",
        "flip",
        "flip-directory",
        "retype",
        "reload",
        "payload",
        "junk-value",
        "meta",
        "declared-size",
        "deep",
    ][rng.integers(10)]
    if op == "truncate":
        return op, valid[: int(rng.integers(0, len(valid)))]
    if op in ("flip", "flip-directory"):
        data = bytearray(valid)
        lo = len(data) - min(len(data), 600) if op == "flip-directory" else 0
        for i in rng.integers(lo, len(data), int(rng.integers(1, 9))):
            data[i] ^= 1 << int(rng.integers(8))
        return op, bytes(data)
    if op == "declared-size":
        return op, hostile.declared_huge(valid, int(rng.integers(1, 2**32 - 2)))
    if op == "meta":

        def edit_meta(meta):
            keys = ["format", "bowlrp_version", "members", "payload_sha256", "kind", "classes"]
            key = keys[rng.integers(6)]
            meta[key] = [None, 1e308, "x" * 1000, {"a": [1] * 5}, "0.0.1", [], "Pipeline"][rng.integers(7)]

        return op, hostile.rewrite(valid, meta_edit=edit_meta)
    payloads = hostile.payloads(sentinel, tmp)

    def edit(schema):
        nodes = _nodes(schema)
        node = nodes[rng.integers(len(nodes))]
        if op == "retype":
            node["__module__"], node["__class__"] = _POOL_TYPES[rng.integers(len(_POOL_TYPES))]
        elif op == "reload":
            node["__loader__"] = _POOL_LOADERS[rng.integers(len(_POOL_LOADERS))]
        elif op == "payload":
            node.clear()
            node.update(list(payloads.values())[rng.integers(len(payloads))])
        elif op == "junk-value":
            key = list(node)[rng.integers(len(node))]
            node[key] = [None, 12, "x", [], {}, 1e308, True][rng.integers(7)]
        else:  # deep nesting
            deep = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}
            cur = deep
            for _ in range(int(rng.integers(100, 450))):  # json.dumps in the test recurses too
                nxt = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}
                cur["content"].append(nxt)
                cur = nxt
            schema["content"]["config"] = deep

    return op, hostile.rewrite(valid, edit)


@pytest.mark.parametrize("n", counts("model"))
def test_fuzz_model_files(n, valid_model, tmp_path):
    path, _ = valid_model
    valid = path.read_bytes()
    sentinel = tmp_path / "SENTINEL"
    rng = np.random.default_rng([SEED, 3])
    loaded = refused = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    for k in range(n):
        op, data = _mutate_model(rng, valid, sentinel, tmp_path)
        p = tmp_path / f"m{k}.pkl"
        p.write_bytes(data)
        for fn in (model_info, load):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. sklearn version warnings on odd attributes
                try:
                    fn(p)
                    loaded += 1
                except ModelFileError as exc:
                    _one_line_naming(str(exc), p)
                    refused += 1
                except Exception as exc:
                    pytest.fail(f"case {k} ({op}) {fn.__name__}: {type(exc).__name__}: {exc}")
            assert not sentinel.exists(), (k, op)
        p.unlink()
    assert refused > 0 and loaded + refused == 2 * n


# -- VOC XML ------------------------------------------------------------------------------------
_NUMBERS = [
    "1",
    "5",
    "0",
    "-3",
    "1e9",
    "inf",
    "-inf",
    "nan",
    "2.5",
    "",
    "x",
    "1e999",
    "  7 ",
    "0x10",
    "99999999999999999999999",
    "１２",
]
_ENCODINGS = [
    "utf-8",
    "latin-1",
    "utf-16",
    "ascii",
    "no-such-codec",
    "utf-32",
    "cp1252",
    "shift_jis",
    "UTF-7",
    "",
    "euc-jp",
]


def _xml_case(rng) -> bytes:
    def num(lo=-5, hi=60):
        return _NUMBERS[rng.integers(len(_NUMBERS))] if rng.random() < 0.1 else str(int(rng.integers(lo, hi)))

    names = ["horse", "caf\u00e9", "", "&amp;"]
    objects = "".join(
        f"<object><name>{names[rng.integers(4)]}</name>"
        f"<difficult>{rng.integers(2)}</difficult>"
        f"<bndbox><xmin>{num(-5, 25)}</xmin><ymin>{num(-5, 25)}</ymin>"
        f"<xmax>{num(20, 60)}</xmax><ymax>{num(20, 60)}</ymax></bndbox></object>"
        for _ in range(int(rng.integers(0, 4)))
    )
    size = (
        f"<size><width>{num(30, 60)}</width><height>{num(30, 60)}</height><depth>3</depth></size>"
        if rng.random() < 0.9
        else ""
    )
    enc = _ENCODINGS[rng.integers(len(_ENCODINGS))]
    head = f'<?xml version="1.0" encoding="{enc}"?>' if rng.random() < 0.4 else ""
    extra = ["", '<!DOCTYPE a [<!ENTITY e "x">]>', '<!DOCTYPE a SYSTEM "file:///etc/passwd">', "<!-- c -->"][
        rng.integers(4)
    ]
    text = f"{head}{extra}<annotation><filename>a.jpg</filename>{size}{objects}</annotation>"
    try:
        data = text.encode(enc if enc not in ("no-such-codec", "") else "utf-8")
    except (LookupError, UnicodeError):
        data = text.encode("utf-8")
    data = bytearray(data)
    mode = rng.integers(4)
    if mode == 1:
        data = data[: int(rng.integers(0, len(data) + 1))]
    elif mode == 2:
        for i in rng.integers(0, len(data), int(rng.integers(1, 6))):
            data[i] = int(rng.integers(256))
    return bytes(data)


@pytest.mark.parametrize("n", counts("xml"))
def test_fuzz_voc_annotations(n, tmp_path):
    rng = np.random.default_rng([SEED, 4])
    read = 0
    for k in range(n):
        path = tmp_path / f"a{k}.xml"
        path.write_bytes(_xml_case(rng))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ann = read_voc_annotation(path)
            except AnnotationError as exc:
                _one_line_naming(str(exc), path)
                continue
            except Exception as exc:
                pytest.fail(f"case {k}: {type(exc).__name__}: {exc}")
        assert all(issubclass(w.category, AnnotationWarning) for w in caught), [
            str(w.message) for w in caught
        ]
        height, width = ann.size[:2]
        for r0, r1, c0, c1 in ann.boxes():
            assert 0 <= r0 < r1 and 0 <= c0 < c1
            if height and width:
                assert r1 <= height and c1 <= width
        read += 1
    assert read > 0


# -- command-line arguments -----------------------------------------------------------------------
def _cli_fixture(tmp_path, valid_model):
    model, img = valid_model
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "a.png").write_bytes(img.read_bytes())
    (d / "sub").mkdir()
    (d / "sub" / "a.png").write_bytes(img.read_bytes())
    (d / "text.png").write_text("not an image")
    (d / "bomb.png").write_bytes(F.png_bomb(30000, 30000))
    odd = os.fsencode(str(d)) + b"/\xff odd.png"
    with open(odd, "wb") as fh:
        fh.write(img.read_bytes())
    evil = d / "evil.pkl"
    sentinel = tmp_path / "SENTINEL"
    node = hostile.payloads(sentinel, tmp_path)["builtins.exec"]
    evil.write_bytes(hostile.inject(model.read_bytes(), node))
    return {
        "model": model,
        "img": d / "a.png",
        "dir": d / "sub",
        "text": d / "text.png",
        "bomb": d / "bomb.png",
        "odd": os.fsdecode(odd),
        "evil": evil,
        "sentinel": sentinel,
    }


def _explain_args(rng, fx, out):
    pick = lambda xs: xs[rng.integers(len(xs))]  # noqa: E731
    images = [
        str(fx["img"]),
        str(fx["dir"]),
        str(fx["dir"]) + "/*.png",
        "scan[1].png",
        "",
        str(fx["text"]),
        str(fx["bomb"]),
        fx["odd"],
        "/nonexistent/x.png",
    ]
    models = [str(fx["model"])] * 4 + [str(fx["evil"]), "/nonexistent.pkl", str(fx["dir"]), ""]
    args = ["-i", *[pick(images) for _ in range(int(rng.integers(1, 3)))], "-m", pick(models)]
    options = {
        "--target": ["0", "1", "5", "-1", "stripes", "horse", "", "1e9"],
        "--rule": [
            "epsilon=1",
            "epsilon=",
            "taylor=1e9",
            "alphabeta=2,1",
            "magic",
            "",
            "flat",
            "siftbins",
            "epsilon=nan",
            "epsilon=-1",
            "absz",
            "wta",
        ],
        "--tile": ["-1", "0", "24", "x", ""],
        "--stride": ["-1", "0", "8", "x"],
        "--colormap": ["bwr", "jet", "nope", ""],
        "--normalize": ["image", "global", "bad"],
    }
    for flag, values in options.items():
        if rng.random() < 0.3:
            args += [flag, pick(values)]
    if rng.random() < 0.1:
        extra = pick(["--trusted", "--bogus", "extra-positional", "--out"])
        if extra == "--trusted" and str(fx["evil"]) in args:
            extra = "--bogus"  # --trusted with a hostile file is the user's explicit consent to run it
        args.append(extra)
    return [*args, "-o", str(out)]


def _evaluate_args(rng, fx, out):
    pick = lambda xs: xs[rng.integers(len(xs))]  # noqa: E731
    images = [str(fx["img"]), str(fx["dir"]), "", str(fx["text"]), str(fx["bomb"]), fx["odd"], "*.nothing"]
    args = [
        "-m",
        pick([str(fx["model"])] * 4 + [str(fx["evil"]), "/nonexistent.pkl"]),
        "-i",
        pick(images),
        "--repeats",
        pick(["1", "2", "0", "-1", "x"]),
        "--steps",
        pick(["1", "3", "0", "-2", "2.5"]),
    ]
    options = {
        "--method": ["region", "descriptor", "x"],
        "--methods": ["", "random", "lrp-eps1,random", "nope", ",", "occlusion"],
        "--block": ["-1", "0", "8", "1000000"],
        "--batch": ["-1", "0", "10"],
        "--perturbation": ["uniform", "blur", "constant", "flip", "x"],
        "--seed": ["0", "-1", str(2**70), "x"],
        "--target": ["0", "horse", "stripes"],
    }
    for flag, values in options.items():
        if rng.random() < 0.3:
            args += [flag, pick(values)]
    return [*args, "-o", str(out)]


def _check_outputs(out):
    if not os.path.isdir(out):
        return
    for root, _, files in os.walk(out):
        hidden = [f for f in files if os.fsdecode(f).startswith(".")]
        assert not hidden, (root, hidden)  # temporary files are hidden; none may remain


def _run_in_process(main, argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


@pytest.mark.parametrize("n", counts("cli"))
def test_fuzz_cli_arguments_in_process(n, valid_model, tmp_path, monkeypatch):
    from bowlrp.evaluate import main as evaluate_main
    from bowlrp.explain import main as explain_main

    fx = _cli_fixture(tmp_path, valid_model)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng([SEED, 5])
    codes = {}
    for k in range(n):
        out = tmp_path / f"out{k}"
        prog, main = ("explain", explain_main) if k % 2 == 0 else ("evaluate", evaluate_main)
        argv = (_explain_args if prog == "explain" else _evaluate_args)(rng, fx, out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code, err = _run_in_process(main, argv)
            except Exception as exc:  # escaped main(): a traceback for the user
                pytest.fail(f"case {k} {prog} {argv}: {type(exc).__name__}: {exc}")
        assert code in (0, 1, 2), (k, prog, argv, code, err)
        assert "Traceback" not in err, (argv, err)
        errors = [ln for ln in err.splitlines() if "error:" in ln]
        assert len(errors) <= 1, (argv, err)
        if code:
            assert errors, (argv, err)
        assert not fx["sentinel"].exists(), argv
        _check_outputs(out)
        codes[code] = codes.get(code, 0) + 1
    assert codes.get(2, 0) > 0


@pytest.mark.parametrize("n", counts("cli-subprocess"))
def test_fuzz_cli_arguments_in_a_subprocess_under_2_gib(n, valid_model, tmp_path):
    """The real programs (``python -m``), including non-UTF-8 arguments passed as bytes."""
    fx = _cli_fixture(tmp_path, valid_model)
    rng = np.random.default_rng([SEED, 6])
    work = tmp_path / "cwd"
    work.mkdir()
    for k in range(n):
        out = tmp_path / f"out{k}"
        if k == 0:
            prog, argv = (
                "explain",
                ["-i", fx["odd"], "-m", str(fx["model"]), "-o", os.fsdecode(os.fsencode(str(out)) + b"\xfe")],
            )
            out = os.fsencode(str(out)) + b"\xfe"
        elif k == 1:
            prog, argv = "explain", ["-i", str(fx["img"]), "-m", str(fx["evil"]), "-o", str(out)]
        else:
            prog = "explain" if k % 2 == 0 else "evaluate"
            argv = (_explain_args if prog == "explain" else _evaluate_args)(rng, fx, out)
        r = run_limited(
            ["-m", f"bowlrp.{prog}", *[os.fsencode(a) for a in argv]], limit=2 * GIB, timeout=600, cwd=work
        )
        assert r.returncode in (0, 1, 2), (argv, r.returncode, r.stderr[-2000:])  # 139: segfault
        assert "Traceback" not in r.stderr, (argv, r.stderr)
        assert not fx["sentinel"].exists()
        _check_outputs(out)
        assert r.peak_rss < 2 * GIB
