"""Peak memory, code executions and crashes for every hostile input, one subprocess each.

    python benchmarks/hostile_inputs.py                  # this tree
    python benchmarks/hostile_inputs.py --at-limit       # also a 16-bit RGBA PNG at the pixel limit
    python benchmarks/hostile_inputs.py --code-root /tmp/old   # another bowlrp checkout (e.g. 70b130f)

Inputs: the hostile model corpus of ``tests/hostile.py`` (code-running skops
payloads injected into a valid model and as bare skops files, zip bombs,
truncated files, wrong hashes, a scikit-learn model, a pickle) and the image
bombs of ``tests/imagefiles.py``. Each is opened with the default limits by
``bowlrp.model_files.load`` / ``model_info`` or ``as_float_image`` in its own process
under ``RLIMIT_AS`` (``--limit`` GiB, default 6, so that a blow-up shows in
the peak instead of being cut off at 2 GiB); the small code-running model files
share one process unless ``--isolate-all``. Reports peak RSS (``ru_maxrss``),
whether the sentinel file appeared (an execution), and crashes (exit code
other than 0, or an exception other than bowlrp's own error).

    python benchmarks/hostile_inputs.py --issue24                 # the inputs of issue 24 instead
    python benchmarks/hostile_inputs.py --issue24 --code-root /tmp/base --select store

``--issue24`` runs, instead of the corpus above, the input classes of issue 24,
every one built by the code under test (``--code-root``) in a helper process and
then read in its own process at the default limits: model files with 3,000 and
20,000 references to one 300 KB member and a lying .npy header, loaded; crafted
fitted attributes (a rank mapping's ``levels_`` of (20000, 20000), a NaN
intercept) loaded and explained, in Python and through ``python -m
bowlrp.explain``; relevance stores (three records declaring (1, 20000, 20000)
heatmaps without chunks, a gzip chunk inflating to 1 GiB, a zstd chunk
declaring 1 GiB, FIFOs in place of a ``zarr.json`` and of a chunk, a chunk
linked to /dev/zero) read by ``python -m bowlrp.spray --store S --out R -q``;
and ``--scheduler`` pointed at a local ``http.server``. Each case reports peak
RSS, wall seconds (``hang`` past ``--timeout``), exit code or exception and,
for commands, the number of stderr lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from bowlrp._utils.validation import as_float_image
from bowlrp.model_files import load, model_info
calls = {"image": as_float_image, "load": load, "model_info": model_info}
for kind, path in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        calls[kind](path)
        result = ["accepted", ""]
    except Exception as e:
        result = [type(e).__name__, str(e)[:160]]
    print(json.dumps(result), flush=True)
"""

OWN_ERRORS = {"ImageError", "ModelFileError"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code-root", default=str(ROOT), help="directory holding the bowlrp package to test")
    ap.add_argument("--limit", type=float, default=6.0, help="RLIMIT_AS of each child in GiB")
    ap.add_argument("--at-limit", action="store_true", help="add an image at the default pixel limit")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument(
        "--isolate-all",
        action="store_true",
        help="one process per input (slow); by default the small model files share one "
        "process, marked * (its peak bounds each of theirs)",
    )
    ap.add_argument("--issue24", action="store_true", help="run the input classes of issue 24 instead")
    ap.add_argument("--timeout", type=float, default=120.0, help="--issue24: seconds before a case is a hang")
    ap.add_argument(
        "--select",
        default=None,
        help="--issue24: only cases whose label holds one of these (comma-separated)",
    )
    args = ap.parse_args(argv)
    if args.issue24:
        return issue24(args)

    import numpy as np

    from bowlrp import DenseSIFT, HardAssignment
    from bowlrp.classifier.svm import KernelSVC
    from bowlrp.model_files import save
    from bowlrp.pipeline import Pipeline
    from tests import hostile
    from tests import imagefiles as F
    from tests.conftest import blobs, stripes
    from tests.limited import GIB, run_limited

    tmp = Path(tempfile.mkdtemp(prefix="bowlrp-hostile-"))
    rng = np.random.default_rng(0)
    images = [stripes(rng, 40) for _ in range(4)] + [blobs(rng, 40) for _ in range(4)]
    model = Pipeline(
        [("s", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), HardAssignment(8, random_state=0))],
        KernelSVC("hik"),
        random_state=0,
    )
    model.fit(images, np.array(["stripes"] * 4 + ["blobs"] * 4))
    valid = save(model, tmp / "valid.pkl").read_bytes()
    sentinel = tmp / "SENTINEL"
    cases = []
    for k, (name, data) in enumerate(hostile.corpus(valid, sentinel, tmp).items()):
        p = tmp / f"model{k:02d}.pkl"
        p.write_bytes(data)
        cases += [(f"model: {name}", "load", p), (f"model: {name}", "model_info", p)]
    for k, (name, make) in enumerate(F.BOMBS.items()):
        p = tmp / f"image{k:02d}.img"
        p.write_bytes(make())
        cases.append((f"image: {name} ({p.stat().st_size:,} B)", "image", p))
    if args.at_limit:
        side = int(np.sqrt(50_000_000)) - 1
        p = tmp / "at_limit.png"
        p.write_bytes(F.encode(".png", np.zeros((side, side, 4), np.uint16)))
        cases.append((f"image: {side}x{side} RGBA16 PNG at the pixel limit", "image", p))

    env = {"PYTHONPATH": args.code_root}
    # inputs that could need memory run alone (their peak is theirs); the small code-running ones
    # share one process (its peak bounds each of theirs), which keeps the run short
    isolated = [c for c in cases if c[1] == "image" or "bomb" in c[0] or "declared" in c[0]]
    batched = [c for c in cases if c not in isolated]
    groups = [[c] for c in isolated] + ([batched] if not args.isolate_all else [[c] for c in batched])
    rows = []
    for group in groups:
        argv = [x for _, kind, path in group for x in (kind, str(path))]
        r = run_limited(
            ["-c", CHILD, *argv], limit=int(args.limit * GIB), timeout=3600, env=env, cwd=str(tmp)
        )
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
        for i, (label, kind, _) in enumerate(group):
            try:
                outcome, message = json.loads(lines[i])
            except (ValueError, IndexError):
                outcome, message = f"exit {r.returncode}", (r.stderr.strip().splitlines() or [""])[-1][:160]
            crash = r.returncode != 0 or outcome not in OWN_ERRORS | {"accepted"}
            rows.append(
                {
                    "input": label,
                    "call": kind,
                    "outcome": outcome,
                    "peak_rss_mb": r.peak_rss / 2**20,
                    "alone": len(group) == 1,
                    "crash": crash,
                    "message": message,
                }
            )
        executed = sentinel.exists()
        sentinel.unlink(missing_ok=True)
        for row in rows[-len(group) :]:
            row["executed"] = executed
            print(
                f"{row['peak_rss_mb']:8.0f} MB{'' if row['alone'] else '*'} {'EXEC ' if executed else ''}"
                f"{'CRASH ' if row['crash'] else ''}{row['call']:10s} {row['input']}: {row['outcome']}",
                flush=True,
            )
    print()
    accepted = sum(r["outcome"] == "accepted" for r in rows)
    print(
        f"inputs: {len(cases)}  executions: {sum(r['executed'] for r in rows)}  "
        f"crashes: {sum(r['crash'] for r in rows)}  accepted: {accepted}  "
        f"max peak RSS: {max(r['peak_rss_mb'] for r in rows):.0f} MB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------
# --issue24: built by the code under test (its own save and store writer), read by it in one
# process per case

BUILD = r"""
import gzip, importlib.util, json, os, sys, traceback, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import numpy as np
import bowlrp
try:
    import bowlrp.model_files
except ImportError:  # 4269499: bowlrp.io
    import bowlrp.io
    sys.modules["bowlrp.model_files"] = bowlrp.io
tmp, root = Path(sys.argv[1]), Path(sys.argv[2])
spec = importlib.util.spec_from_file_location("hostile24", root / "tests" / "hostile.py")
hostile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hostile)
built = {}

def step(name):
    def wrap(f):
        try:
            f()
            built[name] = "ok"
        except Exception:
            built[name] = traceback.format_exc(limit=3)
    return wrap

# the test suite's synthetic images (tests/conftest.py of this tree, whatever --code-root is)
spec = importlib.util.spec_from_file_location("conftest24", root / "tests" / "conftest.py")
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)
stripes, blobs = conftest.stripes, conftest.blobs

rng = np.random.default_rng(0)
images = [stripes(rng, 40) for _ in range(4)] + [blobs(rng, 40) for _ in range(4)]
y = np.array(["stripes"] * 4 + ["blobs"] * 4)
rgb = [np.dstack([im, im[::-1], im[:, ::-1]]) for im in images]
np.save(tmp / "gray.npy", images[0])
np.save(tmp / "rgb.npy", rgb[0])
import cv2
cv2.imwrite(str(tmp / "gray.png"), (images[0] * 255).astype(np.uint8))
cv2.imwrite(str(tmp / "rgb.png"), (rgb[0] * 255).astype(np.uint8))

def save_crafted(model, path):
    # a stranger's file: written without the checks of bowlrp.save (which refuses what load refuses)
    files = sys.modules["bowlrp.model_files"]
    check = getattr(files, "_check_savable", None)
    if check is not None:
        files._check_savable = lambda *args, **kwargs: None
    try:
        bowlrp.save(model, path)
    finally:
        if check is not None:
            files._check_savable = check

def sift():
    return bowlrp.DenseSIFT(bin_sizes=[4], steps=4, backend="opencv")

@step("bow")
def _():
    m = bowlrp.Pipeline([("s", sift(), bowlrp.HardAssignment(8, random_state=0))],
                        bowlrp.KernelSVC("hik"), random_state=0)
    bowlrp.save(m.fit(images, y), tmp / "bow.pkl")

@step("mkl")
def _():
    m = bowlrp.Pipeline(
        [("s", sift(), bowlrp.HardAssignment(8, random_state=0)),
         ("q", bowlrp.ColorQuantiles(radius=4, step=4), bowlrp.RankMapping(8, random_state=0))],
        bowlrp.KernelSVC(["hik", "exp_chi2"], mkl_norm=2), random_state=0)
    bowlrp.save(m.fit(rgb, y), tmp / "mkl.pkl")

valid = (tmp / "bow.pkl").read_bytes() if built["bow"] == "ok" else None
for refs in (3000, 20000):
    @step(f"refs{refs}")
    def _():
        (tmp / f"refs{refs}.pkl").write_bytes(hostile.shared_references(valid, refs, 300_000))

@step("lying_npy")
def _():
    (tmp / "lying_npy.pkl").write_bytes(hostile.lying_npy(valid))

@step("huge_levels")
def _():
    m = bowlrp.load(tmp / "mkl.pkl")
    enc = m.encoders_[1]
    enc.levels_ = ((20000, 20000),)
    enc.pyramid = ((20000, 20000),)
    enc.n_cells_ = 20000 * 20000
    enc.n_features_out_ = enc.n_cells_ * enc.block_size_
    save_crafted(m, tmp / "huge_levels.pkl")

@step("nan_intercept")
def _():
    m = bowlrp.load(tmp / "bow.pkl")
    m.classifier_.intercept_[0] = np.nan
    save_crafted(m, tmp / "nan_intercept.pkl")

@step("store")
def _():
    try:
        from bowlrp.runs.inputs import ImageInput
        from bowlrp.runs.store import RelevanceStore, store_lock
    except ImportError:  # 4269499
        from bowlrp.batch import ImageInput
        from bowlrp.store import RelevanceStore, store_lock

    class Expl:
        def __init__(self, value):
            self.heatmap = np.full((8, 8), value)
            self.score, self.bias_relevance, self.residual, self.absorbed = 64.0 * value, 0.0, 0.0, 0.0

        def summary(self):
            return {"target": "a", "rules": {}}

    path = tmp / "clean.zarr"
    with store_lock(path, "bench"):
        store = RelevanceStore.create(path, {"m": 1})
        for i in range(8):
            store.write(ImageInput(Path(f"im{i}.png"), f"im{i}"), [Expl(1.0 + i)], model_hash="h")

json.dump(built, open(tmp / "built.json", "w"))
"""

CHILD24 = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import bowlrp
kind, path, image = sys.argv[1:4]
try:
    model = bowlrp.load(path)
    if kind == "explain":
        model.explain(np.load(image))
    result = ["accepted", "", 0]
except Exception as e:
    result = [type(e).__name__, " | ".join(str(e).splitlines())[:240], len(str(e).splitlines())]
print(json.dumps(result), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _record(store: Path, image_id: str) -> Path:
    """The record folder of ``image_id`` (found by its zarr.json, so key schemes of any version do)."""
    for rec in (store / "images").iterdir():
        if rec.name == image_id or rec.name.endswith(image_id):
            return rec
    raise LookupError(image_id)


def _chunk(store: Path, image_id: str) -> Path:
    return next(p for p in sorted((_record(store, image_id) / "heatmap" / "c").rglob("*")) if p.is_file())


def _declare_huge(store: Path, image_id: str, side: int = 20000) -> None:
    rec = _record(store, image_id)
    _edit_json(rec / "zarr.json", lambda m: m["attributes"].update(shape=[side, side]))

    def change(m):
        m["shape"] = [1, side, side]
        m["chunk_grid"]["configuration"]["chunk_shape"] = [1, side, side]

    _edit_json(rec / "heatmap" / "zarr.json", change)
    for chunk in (rec / "heatmap" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()


def _store_cases(tmp: Path) -> list[tuple[str, Path]]:
    """(label, store) for each hostile store: copies of the clean 8-record store, edited."""
    clean = tmp / "clean.zarr"

    def copy(name):
        dst = tmp / f"{name}.zarr"
        shutil.copytree(clean, dst, symlinks=True)
        return dst

    out = [("store: clean, 8 records of 8 x 8 (reference)", copy("store_clean"))]
    s = copy("declared")
    for i in range(3):
        _declare_huge(s, f"im{i}")
    out.append(("store: 3 records declare (1, 20000, 20000) heatmaps, no chunks", s))

    import gzip

    s = copy("gzip")
    _edit_json(
        _record(s, "im0") / "heatmap" / "zarr.json",
        lambda m: m.update(codecs=[{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 1}}]),
    )
    _chunk(s, "im0").write_bytes(gzip.compress(bytes(1 << 30)))
    out.append((f"store: gzip chunk ({_chunk(s, 'im0').stat().st_size:,} B) inflating to 1 GiB", s))

    from numcodecs import Zstd

    s = copy("zstd")
    _chunk(s, "im0").write_bytes(Zstd().encode(bytes(1 << 30)))
    out.append((f"store: zstd chunk ({_chunk(s, 'im0').stat().st_size:,} B) declaring 1 GiB", s))

    s = copy("fifo_json")
    rec_json = _record(s, "im0") / "zarr.json"
    rec_json.unlink()
    os.mkfifo(rec_json)
    out.append(("store: FIFO in place of a record's zarr.json", s))

    s = copy("fifo_chunk")
    chunk = _chunk(s, "im0")
    chunk.unlink()
    os.mkfifo(chunk)
    out.append(("store: FIFO in place of a heatmap chunk", s))

    s = copy("devzero")
    chunk = _chunk(s, "im0")
    chunk.unlink()
    os.symlink("/dev/zero", chunk)
    out.append(("store: heatmap chunk is a symlink to /dev/zero", s))
    return out


def issue24(args) -> int:
    from tests.limited import GIB, run_limited

    tmp = Path(tempfile.mkdtemp(prefix="bowlrp-issue24-"))
    env = {"PYTHONPATH": args.code_root, "PYTHONWARNINGS": "ignore"}
    t = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp), str(ROOT)],
        env={**os.environ, **env},
        cwd=str(tmp),
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    built = json.loads((tmp / "built.json").read_text())
    for name, status in built.items():
        if status != "ok":
            print(f"not built: {name}: {status.strip().splitlines()[-1]}", file=sys.stderr)
    print(f"# built in {time.monotonic() - t:.0f} s under {tmp}", flush=True)

    def ok(*names):
        return all(built.get(n) == "ok" for n in names)

    # (label, argv of the child, whether it is a command whose stderr lines count)
    cases = []
    py = [("model: valid bag-of-words model (reference)", "explain", "bow", "gray")]
    py += [
        ("model: 3,000 references to one 300 KB member", "load", "refs3000", "gray"),
        ("model: 20,000 references to one 300 KB member", "load", "refs20000", "gray"),
        ("model: .npy header declaring 1 TiB", "load", "lying_npy", "gray"),
        ("model: rank mapping levels_ ((20000, 20000),), load + explain", "explain", "huge_levels", "rgb"),
        ("model: NaN intercept_, load + explain", "explain", "nan_intercept", "gray"),
    ]
    for label, kind, name, image in py:
        if ok(name):
            cases.append(
                (label, ["-c", CHILD24, kind, str(tmp / f"{name}.pkl"), str(tmp / f"{image}.npy")], False)
            )
    for label, name, image in [
        ("CLI explain: rank mapping levels_ ((20000, 20000),)", "huge_levels", "rgb"),
        ("CLI explain: NaN intercept_", "nan_intercept", "gray"),
    ]:
        if ok(name):
            cmd = [
                "-m",
                "bowlrp.explain",
                "--image",
                str(tmp / f"{image}.png"),
                "--model",
                str(tmp / f"{name}.pkl"),
            ]
            cases.append((label, [*cmd, "--out", str(tmp / f"out_{name}"), "-q"], True))
    selected = [s for s in (args.select or "").split(",") if s]

    def wanted(label):
        return not selected or any(s in label for s in selected)

    if ok("store"):
        for label, store in _store_cases(tmp):
            out = tmp / f"report_{store.stem}"
            cases.append(
                (label, ["-m", "bowlrp.spray", "--store", str(store), "--out", str(out), "-q"], True)
            )
    server = None
    if ok("bow") and wanted("scheduler"):
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        cmd = ["-m", "bowlrp.explain", "--image", str(tmp / "gray.png"), "--model", str(tmp / "bow.pkl")]
        cmd += ["--store", str(tmp / "sched.zarr"), "--scheduler", f"tcp://127.0.0.1:{port}", "-q"]
        cases.append(("CLI explain: --scheduler tcp:// at a local http.server", cmd, True))

    rows = []
    try:
        for label, argv, command in cases:
            if not wanted(label):
                continue
            t = time.monotonic()
            try:
                r = run_limited(
                    argv, limit=int(args.limit * GIB), timeout=args.timeout, env=env, cwd=str(tmp)
                )
            except subprocess.TimeoutExpired:
                row = {"case": label, "outcome": "hang", "exit": None, "peak_rss_mb": None, "lines": None}
                row.update(seconds=time.monotonic() - t, message=f"killed after {args.timeout:.0f} s")
            else:
                seconds = time.monotonic() - t
                err = [ln for ln in r.stderr.splitlines() if ln.strip()]
                if command:
                    outcome, message, lines = f"exit {r.returncode}", " | ".join(err)[:300], len(err)
                else:
                    try:
                        outcome, message, lines = json.loads(r.stdout.strip().splitlines()[-1])
                    except (ValueError, IndexError):
                        outcome, message, lines = f"died ({r.returncode})", (err or [""])[-1][:240], len(err)
                row = {"case": label, "outcome": outcome, "exit": r.returncode, "lines": lines}
                row.update(peak_rss_mb=r.peak_rss / 2**20, seconds=seconds, message=message)
                row["stderr"] = [ln[:500] for ln in err[-20:]]
            rows.append(row)
            peak = "      –" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:7.0f}"
            print(
                f"{peak} MB {row['seconds']:6.1f} s  {row['outcome']:18s} lines={row['lines']}  {label}\n"
                f"{'':20s}{row['message']}",
                flush=True,
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    print()
    peaks = [r["peak_rss_mb"] for r in rows if r["peak_rss_mb"] is not None]
    print(
        f"cases: {len(rows)}  hangs: {sum(r['outcome'] == 'hang' for r in rows)}  "
        f"above 2 GB: {sum(p > 2048 for p in peaks)}  max peak RSS: {max(peaks, default=0):.0f} MB  "
        f"multi-line: {sum((r['lines'] or 0) > 1 for r in rows)}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
