"""Peak memory of ``bowlrp-explain`` on 1 versus many photos (streaming output).

    python benchmarks/bench_batch_memory.py [--images 200]

Trains a small rank-mapping HIK model, writes N generated 480 x 360 photos,
then runs ``python -m bowlrp.explain`` on 1 photo and on all N, each in its own
process, and reports the peak resident set size (``ru_maxrss``) of each run and
their ratio, plus seconds per image.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scenes import scene  # noqa: E402

from bowlrp import DenseSIFT, KernelSVC, Pipeline, RankMapping, save  # noqa: E402

CHILD = """
import resource, sys
from bowlrp.cli.explain import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def peak_run(args: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1]) / 1024.0, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = [scene(i, 120, 160, kind=i % 2) for i in range(16)]
        model = Pipeline(
            [("sift", DenseSIFT(bin_sizes=[6], steps=6, backend="opencv"), RankMapping(64))],
            KernelSVC("hik"),
            random_state=0,
        ).fit(train, np.arange(16) % 2)
        model_path = save(model, tmp / "model.pkl")
        photos = tmp / "photos"
        photos.mkdir()
        for i in range(args.images):
            ok, buf = cv2.imencode(".jpg", (scene(100 + i, kind=i % 2) * 255).astype(np.uint8))
            (photos / f"p{i:04d}.jpg").write_bytes(buf.tobytes())
        one, t_one = peak_run(
            ["-i", str(photos / "p0000.jpg"), "-m", str(model_path), "-o", str(tmp / "out1"), "-q"]
        )
        many, t_many = peak_run(["-i", str(photos), "-m", str(model_path), "-o", str(tmp / "outN"), "-q"])
    print(f"peak RSS, 1 photo:   {one:8.1f} MB  ({t_one:.1f} s including start-up)")
    print(
        f"peak RSS, {args.images} photos: {many:8.1f} MB  ({t_many:.1f} s, "
        f"{(t_many - t_one) / max(args.images - 1, 1):.2f} s per extra photo)"
    )
    print(f"ratio many / one: {many / one:.3f}")
    print(f"this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
