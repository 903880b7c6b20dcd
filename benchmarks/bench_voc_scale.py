"""Scale simulation of the PASCAL VOC 2007 Fisher-vector experiment (issue 12).

Runs generated VOC-size (500 x 375) images through the real
``configs/voc_fisher.yaml`` path of ``experiments/voc.py`` -- streaming
vocabulary sampling (1M descriptors, PCA 80, GMM 256), float32 features of
327,680 dimensions in a memory-mapped file, one linear SVM per class with the
Gram matrix built once in float64 blocks, test decisions, explanations -- one
stage per invocation (each stays within a few minutes on the shared machine;
the stages reuse each other's results in ``--work``)::

    python benchmarks/bench_voc_scale.py --stage data     --n-train 48 --n-test 16
    python benchmarks/bench_voc_scale.py --stage vocab    --n-train 48 --n-test 16
    python benchmarks/bench_voc_scale.py --stage features --n-train 48 --n-test 16
    python benchmarks/bench_voc_scale.py --stage svm      --n-train 48 --n-test 16
    python benchmarks/bench_voc_scale.py --stage test     --n-train 48 --n-test 16
    python benchmarks/bench_voc_scale.py --stage explain  --n-train 48 --n-test 16
    python benchmarks/bench_voc_scale.py --stage gram     --n-train 48 --n-test 16
    python benchmarks/bench_voc_scale.py --stage report   --n-train 48 --n-test 16

Per stage: wall time, CPU time (user + system, this process and its
children), peak resident memory (``VmHWM``) and the peak of anonymous
resident memory (``RssAnon``, sampled every 50 ms: the memory that must fit
in RAM; the memory-mapped features are file pages the kernel can evict).
``report`` extrapolates to VOC 2007 (5,011 trainval, 4,952 test images) and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

VOC_TRAIN, VOC_TEST, VOC_CLASSES = 5011, 4952, 20


def _status() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = int(value.split()[0]) * 1024
    return out


class Meter:
    """Wall, CPU and peak memory of a block of code."""

    def __enter__(self):
        self.peak_anon = _status().get("RssAnon", 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        self.c0 = self._cpu()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak_anon = max(self.peak_anon, _status().get("RssAnon", 0))

    @staticmethod
    def _cpu() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = self._cpu() - self.c0
        self._stop.set()
        self._thread.join()
        self.peak_anon = max(self.peak_anon, _status().get("RssAnon", 0))
        self.hwm = _status().get("VmHWM", 0)
        return False

    def record(self, **extra) -> dict:
        return {
            "wall_s": round(self.wall, 2),
            "cpu_s": round(self.cpu, 2),
            "peak_anon_mb": round(self.peak_anon / 2**20, 1),
            "vm_hwm_mb": round(self.hwm / 2**20, 1),
            **extra,
        }


def _save(work: Path, stage: str, record: dict) -> None:
    (work / f"{stage}.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({stage: record}))


def _load_stage(work: Path, stage: str) -> dict:
    path = work / f"{stage}.json"
    if not path.is_file():
        raise SystemExit(f"run --stage {stage} first ({path} missing)")
    return json.loads(path.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--stage",
        required=True,
        choices=["data", "vocab", "features", "svm", "test", "explain", "gram", "report"],
    )
    ap.add_argument("--n-train", type=int, default=48)
    ap.add_argument("--n-test", type=int, default=16)
    ap.add_argument("--n-explain", type=int, default=4)
    ap.add_argument(
        "--gmm-iter",
        type=int,
        default=3,
        help="EM iterations measured (the config allows up to 100; extrapolated)",
    )
    ap.add_argument(
        "--n-gram",
        type=int,
        default=300,
        help="rows of the synthetic 327,680-d float32 matrix of the gram stage",
    )
    ap.add_argument("--work", default="/tmp/bowlrp_voc_scale")
    ap.add_argument("--config", default="voc_fisher")
    args = ap.parse_args(argv)
    work = Path(args.work) / f"n{args.n_train}-{args.n_test}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"

    from bowlrp.datasets.voc import read_voc
    from bowlrp.model_files import load, save
    from bowlrp.pipeline import Pipeline

    if args.stage == "data":
        from bowlrp.datasets.voc_like import make_voc_like

        with Meter() as m:
            make_voc_like(data, args.n_train, args.n_test, seed=0, size=(375, 500), progress=True)
        _save(work, "data", m.record(n_train=args.n_train, n_test=args.n_test))
        return 0
    train, test = read_voc(data, "trainval"), read_voc(data, "test")
    if args.stage == "vocab":
        pipe = Pipeline.from_config(args.config, n_jobs=1, verbose=True)
        encoder = pipe.channels[0][2]
        max_iter = encoder.vocabulary.max_iter
        encoder.set_params(vocabulary__max_iter=args.gmm_iter)
        t = time.process_time()
        for p in train.paths[:5]:
            pipe.channels[0][1].describe(p)
        describe_s = (time.process_time() - t) / 5  # CPU seconds
        with Meter() as m:
            pipe.fit_vocabularies(list(train.paths))
        save(pipe, work / "vocabulary.pkl")
        gmm = pipe.encoders_[0].vocabulary_
        _save(
            work,
            "vocab",
            m.record(
                describe_per_image_s=round(describe_s, 3),
                descriptors_sampled=int(sum(pipe.n_descriptors_sampled_)),
                gmm_iterations=int(gmm.n_iter_),
                config_max_iter=int(max_iter),
            ),
        )
        return 0
    if args.stage == "features":
        from voc import features_on_disk

        pipe = load(work / "vocabulary.pkl")
        pipe.set_params(n_jobs=1, verbose=True)
        (work / "features_trainval.done").unlink(missing_ok=True)
        with Meter() as m:
            X = features_on_disk(pipe, list(train.paths), work / "features_trainval.npy")
        _save(
            work,
            "features",
            m.record(n_images=len(train), feature_size=int(X.shape[1]), file_mb=round(X.nbytes / 2**20, 1)),
        )
        return 0
    if args.stage == "svm":
        from numpy.lib.format import open_memmap

        from bowlrp.classifier.kernels import blocked_inner

        pipe = load(work / "vocabulary.pkl")
        X = open_memmap(work / "features_trainval.npy", mode="r")
        with Meter() as g:  # the Gram alone, to split the fit's time (the fit computes it again)
            blocked_inner(X, X)
        with Meter() as m:
            pipe.fit_classifier(X, (train.labels == 1).astype(int), task_mask=train.labels != 0)
            pipe.classifier_.compress_linear()
        save(pipe, work / "model.pkl")
        _save(
            work,
            "svm",
            m.record(
                gram_wall_s=round(g.wall, 2),
                gram_cpu_s=round(g.cpu, 2),
                n_tasks=len(train.classes),
                n_support=int((pipe.classifier_.support_vectors_ != 0).any(1).sum()),
            ),
        )
        return 0
    if args.stage == "test":
        from voc import features_on_disk

        from bowlrp.evaluation.voc_ap import mean_average_precision

        pipe = load(work / "model.pkl")
        pipe.set_params(n_jobs=1, verbose=True)
        (work / "features_test.done").unlink(missing_ok=True)
        with Meter() as m:
            Xt = features_on_disk(pipe, list(test.paths), work / "features_test.npy")
            F = pipe.classifier_.decision_function(Xt)
        ap = mean_average_precision(F, test.labels, test.classes)
        _save(work, "test", m.record(n_images=len(test), map=round(ap["map"], 4)))
        return 0
    if args.stage == "explain":
        from bowlrp.explanation import explain_trace

        pipe = load(work / "model.pkl")
        rows = [i for i in range(len(test)) if (test.labels[i] == 1).any()][: args.n_explain]
        targets = sum(int((test.labels[i] == 1).sum()) for i in rows)
        c0 = time.process_time()
        for p in test.paths[:5]:
            pipe.extractors_[0].describe(p)
        describe_cpu = (time.process_time() - c0) / 5
        with Meter() as f:
            for i in rows:
                pipe.forward_one(test.paths[i])
        with Meter() as m:
            for i in rows:
                trace = pipe.forward_one(test.paths[i])
                for k in np.flatnonzero(test.labels[i] == 1):
                    explain_trace(pipe, trace, int(k))
        _save(
            work,
            "explain",
            m.record(
                n_images=len(rows),
                n_explanations=targets,
                describe_cpu_per_image_s=round(describe_cpu, 3),
                forward_only_wall_s=round(f.wall, 2),
                forward_only_cpu_s=round(f.cpu, 2),
            ),
        )
        return 0
    if args.stage == "gram":
        from sklearn.svm import SVC

        from bowlrp.classifier.kernels import blocked_inner

        rng = np.random.default_rng(0)
        n, d = args.n_gram, 327_680
        X = np.empty((n, d), dtype=np.float32)
        for i in range(n):  # Fisher-like rows: unit l2 norm, signed square-rooted values
            v = rng.standard_normal(d).astype(np.float32)
            X[i] = np.sign(v) * np.sqrt(np.abs(v))
            X[i] /= np.linalg.norm(X[i])
        y = (X[:, :1000].sum(axis=1) > 0).astype(int)
        with Meter() as g:
            K = blocked_inner(X, X)
        with Meter() as m:
            SVC(kernel="precomputed", C=1.0).fit(K, y)
        _save(work, "gram", g.record(n_rows=n, libsvm_wall_s=round(m.wall, 2), libsvm_cpu_s=round(m.cpu, 2)))
        return 0
    report(work, args)
    return 0


def report(work: Path, args) -> None:
    """Markdown table of the measured stages and the extrapolation to VOC 2007 (CPU seconds)."""
    s = {k: _load_stage(work, k) for k in ("vocab", "features", "svm", "test", "explain", "gram")}
    n, m = args.n_train, args.n_test
    v, ex, g = s["vocab"], s["explain"], s["gram"]
    describe = ex["describe_cpu_per_image_s"]
    gmm = max(v["cpu_s"] - describe * n, 0.0)
    gmm_full = gmm * v["config_max_iter"] / max(v["gmm_iterations"], 1)
    scale2 = (VOC_TRAIN / g["n_rows"]) ** 2
    extrap = [
        ("describe trainval for the vocabulary sample", describe * VOC_TRAIN),
        (f"GMM on 1M descriptors, <= {v['config_max_iter']} EM iterations", gmm_full),
        ("trainval features (describe + Fisher encode)", s["features"]["cpu_s"] / n * VOC_TRAIN),
        ("Gram matrix 5,011^2 x 327,680 (blocked float64)", g["cpu_s"] * scale2),
        ("libsvm, 20 classes (assumed ~N^2)", g["libsvm_cpu_s"] * scale2 * VOC_CLASSES),
        ("test features + decisions", s["test"]["cpu_s"] / m * VOC_TEST),
        ("explanations (1 forward + k targets per test image)", ex["cpu_s"] / ex["n_images"] * VOC_TEST),
    ]
    print("| stage (measured) | wall s | CPU s | peak anon MB | VmHWM MB |")
    print("|---|---|---|---|---|")
    for key in ("vocab", "features", "svm", "test", "explain", "gram"):
        r = s[key]
        print(f"| {key} | {r['wall_s']} | {r['cpu_s']} | {r['peak_anon_mb']} | {r['vm_hwm_mb']} |")
    print()
    print("| VOC 2007 stage (extrapolated) | CPU s |")
    print("|---|---|")
    for label, value in extrap:
        print(f"| {label} | {value:,.0f} |")
    total = sum(value for _, value in extrap)
    print(f"| **total** | **{total:,.0f} s = {total / 3600:.2f} h CPU** |")
    fv = 327_680 * 4
    print(
        f"\nfeatures on disk: trainval {VOC_TRAIN * fv / 2**30:.2f} GiB, "
        f"test {VOC_TEST * fv / 2**30:.2f} GiB; Gram {VOC_TRAIN**2 * 8 / 2**20:.0f} MiB"
    )
    print(
        json.dumps(
            {
                "stages": s,
                "extrapolated_cpu_s": {k: round(x) for k, x in extrap},
                "total_cpu_s": round(total),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
