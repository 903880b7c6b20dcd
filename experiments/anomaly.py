"""Visual inspection: detect and localise planted defects with an explained SVDD.

    python experiments/anomaly.py --out experiments/results/anomaly

Generates normal knurled parts and parts with a scratch, a spot or a missing
piece (``bowlrp.datasets.inspection``), fits dense SIFT -> Fisher vector ->
``KernelSVDD`` (linear kernel, exact decomposition, thesis eq. A.13) on normal
parts only, and reports

* detection AUC of the anomaly score on held-out normal and defective parts
  (also for a one-class SVM on the same features, and per defect kind);
* localisation: the share of positive (anomalous) relevance inside the defect
  mask against the mask's area share, raw and with the mask dilated by half
  a SIFT descriptor (relevance of a descriptor is spread over its support);
* region perturbation (``bowlrp.evaluation.region_perturbation``): blocks
  repaired with normal surface, most anomalous first (MoRF) versus random, AOPC.

Writes ``metrics.json`` and ``figure.png`` (rows: image | heatmap | defect mask).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bowlrp import image as pictures  # noqa: E402
from bowlrp.classifier.anomaly import KernelSVDD, OneClassKernelSVM  # noqa: E402
from bowlrp.datasets.inspection import KINDS, generate, normal_patches  # noqa: E402
from bowlrp.descriptors import DenseSIFT  # noqa: E402
from bowlrp.encoding import FisherVector  # noqa: E402
from bowlrp.encoding.vocabulary import GMMVocabulary  # noqa: E402
from bowlrp.evaluation import region_perturbation  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402

BIN = 4  # SIFT bin size: descriptors cover 4 x 4 bins = 16 pixels


def log(msg: str) -> None:
    print(f"[anomaly] {msg}", flush=True)


def make_pipeline(nu: float = 0.1, seed: int = 0, n_jobs=None) -> Pipeline:
    """Dense SIFT (bin 4, step 3) -> Fisher vector (8 Gaussians, PCA 24) -> linear SVDD."""
    return Pipeline(
        [
            (
                "sift",
                DenseSIFT(bin_sizes=[BIN], steps=3, backend="opencv"),
                FisherVector(GMMVocabulary(8, pca_components=24, max_descriptors=20000, random_state=seed)),
            )
        ],
        KernelSVDD("linear", nu=nu),
        random_state=seed,
        n_jobs=n_jobs,
    )


def localisation(heatmap: np.ndarray, mask: np.ndarray, dilate: int) -> dict:
    """Share of the positive relevance inside the mask (raw and dilated) and the area shares."""
    positive = np.maximum(heatmap, 0.0)
    total = max(float(positive.sum()), 1e-300)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    dilated = cv2.dilate(mask.astype(np.uint8), k) > 0
    return {
        "positive_share_in_mask": float(positive[mask].sum() / total),
        "mask_area_share": float(mask.mean()),
        "positive_share_in_dilated_mask": float(positive[dilated].sum() / total),
        "dilated_mask_area_share": float(dilated.mean()),
    }


def _mean(rows, key):
    return float(np.mean([r[key] for r in rows]))


def summarise_localisation(rows: list[dict]) -> dict:
    keys = [
        "positive_share_in_mask",
        "mask_area_share",
        "positive_share_in_dilated_mask",
        "dilated_mask_area_share",
    ]
    out = {k: _mean(rows, k) for k in keys}
    out["ratio_mask"] = float(np.mean([r["positive_share_in_mask"] / r["mask_area_share"] for r in rows]))
    out["ratio_dilated"] = float(
        np.mean([r["positive_share_in_dilated_mask"] / r["dilated_mask_area_share"] for r in rows])
    )
    out["n"] = len(rows)
    return out


def figure(parts, heatmaps, scores=None) -> np.ndarray:
    """Rows of image | heatmap (jet, zero = green, per-image scale) | defect mask, each titled
    (the defect's kind; the anomaly score of the heatmap's explanation when ``scores`` is given)."""
    rows = []
    scores = [None] * len(parts) if scores is None else scores
    for part, h, score in zip(parts, heatmaps, scores):
        title = "anomaly" if score is None else f"anomaly: f(x) = {score:+.3g}"
        img = pictures.label_panel(np.repeat(part.image[:, :, None], 3, axis=2), part.kind)
        heat = pictures.label_panel(
            pictures.colorize(pictures.normalize_heatmaps([h])[0], "jet") / 255.0, title
        )
        mask = pictures.label_panel(
            np.repeat(part.mask[:, :, None].astype(np.float64), 3, axis=2), "defect mask"
        )
        gap = np.ones((img.shape[0], 4, 3))
        rows.append(np.hstack([img, gap, heat, gap, mask]))
    sep = np.ones((4, rows[0].shape[1], 3))
    fig = np.vstack([np.vstack([r, sep]) for r in rows])[:-4]
    return cv2.resize(fig, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def run(
    out_dir,
    n_train: int = 80,
    n_test_normal: int = 40,
    n_test_anomalous: int = 45,
    size: int = 96,
    nu: float = 0.1,
    seed: int = 0,
    n_aopc: int = 9,
    aopc_steps: int = 20,
    aopc_repeats: int = 3,
    n_figure: int = 2,
    n_jobs=None,
) -> dict:
    """The whole experiment; returns the metrics (also written to ``out_dir/metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = generate(seed, n_train, size=size)
    test = generate(seed + 1, n_test_normal, n_test_anomalous, size=size)
    repair = generate(seed + 2, 4, size=size)
    log(f"{n_train} normal training parts, {n_test_normal} normal + {n_test_anomalous} defective test parts")
    pipe = make_pipeline(nu, seed, n_jobs).fit([p.image for p in train])
    t_fit = time.perf_counter() - t0
    X_train = pipe.transform([p.image for p in train])
    X_test = pipe.transform([p.image for p in test])
    y = np.array([p.anomalous for p in test])
    kinds = np.array([p.kind for p in test])
    svdd = pipe.classifier_
    score = -svdd.decision_function(X_test)
    ocsvm = OneClassKernelSVM("linear", nu=nu).fit(X_train)
    oc_score = -ocsvm.decision_function(X_test)
    detection = {
        "svdd_auc": float(roc_auc_score(y, score)),
        "ocsvm_auc": float(roc_auc_score(y, oc_score)),
        "svdd_auc_per_kind": {
            k: float(roc_auc_score(y[(kinds == k) | ~y], score[(kinds == k) | ~y]))
            for k in KINDS
            if np.any(kinds == k)
        },
        "svdd_mean_anomaly_score": {"normal": float(score[~y].mean()), "defective": float(score[y].mean())},
        "svdd_flagged_normal": float(np.mean(score[~y] > 0)),
        "svdd_flagged_defective": float(np.mean(score[y] > 0)),
        "svdd_constant_self_kernel": svdd.constant_self_kernel_,
        "svdd_n_support": int(len(svdd.support_)),
    }
    log(
        f"fitted in {t_fit:.0f} s; SVDD AUC {detection['svdd_auc']:.3f}, "
        f"one-class SVM AUC {detection['ocsvm_auc']:.3f}"
    )

    anomalous = [p for p in test if p.anomalous]
    t_explain = time.perf_counter()
    explanations = pipe.explain([p.image for p in anomalous])
    t_explain = time.perf_counter() - t_explain
    heatmaps = [e.heatmap for e in explanations]
    conservation = max(
        abs(e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual - e.score) for e in explanations
    )
    per_part = [dict(kind=p.kind, **localisation(h, p.mask, 2 * BIN)) for p, h in zip(anomalous, heatmaps)]
    loc = {"all": summarise_localisation(per_part)}
    for k in KINDS:
        rows = [r for r in per_part if r["kind"] == k]
        if rows:
            loc[k] = summarise_localisation(rows)
    a = loc["all"]
    log(
        f"positive relevance in the defect masks: {a['positive_share_in_mask']:.3f} "
        f"(area {a['mask_area_share']:.4f}); dilated by {2 * BIN} px: "
        f"{a['positive_share_in_dilated_mask']:.3f} (area {a['dilated_mask_area_share']:.3f})"
    )

    # the one-class SVM on the same features, explained with eq. A.9 (negated: anomaly score)
    oc_pipe = copy.copy(pipe)
    oc_pipe.classifier_ = ocsvm
    oc_rows = [
        localisation(e.heatmap, p.mask, 2 * BIN)
        for p, e in zip(anomalous, oc_pipe.explain([p.image for p in anomalous]))
    ]
    loc["ocsvm_all"] = summarise_localisation(oc_rows)

    chosen = [i for k in KINDS for i in [j for j, p in enumerate(anomalous) if p.kind == k][: n_aopc // 3]]
    t_pert = time.perf_counter()
    repaired = {}
    # with the nearest-crop repair MoRF is deterministic: one repeat
    for ordering, repeats in (("morf", 1), ("random", aopc_repeats)):
        repaired[ordering] = region_perturbation(
            pipe,
            [anomalous[i].image for i in chosen],
            [heatmaps[i] for i in chosen],
            orderings=(ordering,),
            block=8,
            steps=aopc_steps,
            repeats=repeats,
            perturbation=normal_patches(repair),
            seed=seed,
            target=-1,
        ).aopc[ordering]
    t_pert = time.perf_counter() - t_pert
    aopc = {o: {"aopc": m, "stderr": s} for o, (m, s) in repaired.items()}
    log(
        f"AOPC (anomaly score, {len(chosen)} parts, {aopc_steps} blocks of 8 px): "
        f"MoRF {aopc['morf']['aopc']:.4f} +- {aopc['morf']['stderr']:.4f}, "
        f"random {aopc['random']['aopc']:.4f} +- {aopc['random']['stderr']:.4f}"
    )

    shown = [i for k in KINDS for i in [j for j, p in enumerate(anomalous) if p.kind == k][:n_figure]]
    pictures.save_png(
        out / "figure.png",
        figure(
            [anomalous[i] for i in shown],
            [heatmaps[i] for i in shown],
            [float(explanations[i].score) for i in shown],
        ),
    )
    metrics = {
        "settings": {
            "n_train": n_train,
            "n_test_normal": n_test_normal,
            "n_test_anomalous": n_test_anomalous,
            "size": size,
            "nu": nu,
            "seed": seed,
            "pipeline": "DenseSIFT(bin 4, step 3) -> FisherVector(GMM 8, PCA 24) -> "
            "KernelSVDD(linear), exact decomposition (eq. A.13)",
            "svdd_solver": "libsvm one-class SMO on the shifted Gram matrix "
            "K - (d 1^T + 1 d^T)/2 (exact SVDD dual)",
            "dilation_px": 2 * BIN,
        },
        "detection": detection,
        "localisation": loc,
        "region_perturbation": {
            "aopc": aopc,
            "n_parts": len(chosen),
            "block": 8,
            "steps": aopc_steps,
            "repeats": {"morf": 1, "random": aopc_repeats},
            "perturbation": "nearest crop of 4 other normal parts (repair)",
            "target": "anomaly score (-1)",
        },
        "max_conservation_error": float(conservation),
        "seconds_fit": t_fit,
        "seconds_explain": t_explain,
        "seconds_region_perturbation": t_pert,
        "seconds_total": time.perf_counter() - t0,
    }
    _write_json(out / "metrics.json", metrics)
    log(f"done in {metrics['seconds_total']:.0f} s; wrote {out / 'metrics.json'} and {out / 'figure.png'}")
    return metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/anomaly")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=80)
    ap.add_argument("--nu", type=float, default=0.1)
    ap.add_argument("--n-jobs", type=int, default=None)
    args = ap.parse_args(argv)
    run(args.out, n_train=args.n_train, nu=args.nu, seed=args.seed, n_jobs=args.n_jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
