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
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
