"""Anomaly detection on kinds it was not tuned for, and the explained inspection experiment.

    python experiments/anomaly.py --out experiments/results/anomaly            # the kinds table
    python experiments/anomaly.py --out DIR --seeds 0 --select                 # the config choice
    python experiments/anomaly.py --out DIR --inspection-details               # the SVDD inspection run

**Kinds** (the default, ``make anomaly-experiment``): the shipped ``anomaly`` config
(``Pipeline.from_config("anomaly")``, chosen with ``--select`` on the kinds other than
``bowlrp.datasets.anomalies.HELD_OUT``) is fitted, per data seed, on normal images only
(inspection parts; natural-looking backgrounds) and scored on every generated kind and
size (``bowlrp.datasets.anomalies``): detection AUC, the false-positive rate of its
calibrated ``predict`` on the normal test images, and localisation: relevance mass
accuracy (``bowlrp.evaluation.localisation``, positive relevance) on the defect masks
against the masks' area share. Per seed one JSON in ``DIR/seeds/`` (an existing one is
reused, so two processes may share the seeds); then ``metrics.json``, ``table.md`` (mean
and standard error over seeds) and ``kinds.png`` (image | heatmap | mask per kind and size).

**Inspection details** (``--inspection-details``): the earlier experiment below.


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
from bowlrp.datasets.anomalies import HELD_OUT, NATURAL_KINDS, SIZES, Sample  # noqa: E402
from bowlrp.datasets.anomalies import generate as generate_kind  # noqa: E402
from bowlrp.datasets.inspection import KINDS, generate, normal_patches  # noqa: E402
from bowlrp.descriptors import ColorQuantiles, DenseSIFT  # noqa: E402
from bowlrp.encoding import FisherVector, RankMapping  # noqa: E402
from bowlrp.encoding.local_pooling import TailFisherVector  # noqa: E402
from bowlrp.encoding.vocabulary import GMMVocabulary, KMeansVocabulary  # noqa: E402
from bowlrp.evaluation import region_perturbation  # noqa: E402
from bowlrp.evaluation.localisation import relevance_mass_accuracy  # noqa: E402
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
    (the defect's kind; the anomaly score ``-f(x)`` the heatmap explains when ``scores`` is given:
    an explanation of the outlier class ``-1`` decomposes ``-f(x)``, positive for an anomaly)."""
    rows = []
    scores = [None] * len(parts) if scores is None else scores
    for part, h, score in zip(parts, heatmaps, scores):
        title = "anomaly" if score is None else f"-f(x) = {score:+.3g}"
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


# -- kinds: the shipped detector on anomalies it was not tuned for ----------------------------
CASES = [("inspection", "mixed")] + [(k, z) for k in NATURAL_KINDS for z in SIZES]


def candidates(seed: int) -> dict:
    """The detectors ``--select`` compares (the shipped config is one of them, by name)."""

    def sift():
        return DenseSIFT(bin_sizes=[BIN], steps=3, backend="opencv")

    def gmm():
        return GMMVocabulary(8, pca_components=24, max_descriptors=20000, random_state=seed)

    def words(pooling):
        return RankMapping(KMeansVocabulary(64, random_state=seed), pooling=pooling)

    def one(encoder, kernel):
        return Pipeline([("sift", sift(), encoder)], KernelSVDD(kernel, nu=0.1), random_state=seed)

    return {
        "fisher-mean": lambda: one(FisherVector(gmm()), "linear"),
        "bow-max": lambda: one(words("max"), "hik"),
        "bow-p8": lambda: one(words(8.0), "hik"),
        "fisher-tail5-l2": lambda: one(TailFisherVector(gmm(), tail=0.05), "linear"),
        "fisher-tail5": lambda: one(TailFisherVector(gmm(), tail=0.05, normalization="power"), "linear"),
        "fisher-tail2": lambda: one(TailFisherVector(gmm(), tail=0.02, normalization="power"), "linear"),
        "fisher-tail5+quantiles-tail5": lambda: Pipeline(
            [
                ("sift", sift(), TailFisherVector(gmm(), tail=0.05, normalization="power")),
                (
                    "quantiles",
                    ColorQuantiles(radius=4, step=3, quantiles=[0.1, 0.3, 0.5, 0.7, 0.9], color="grey"),
                    TailFisherVector(
                        GMMVocabulary(8, max_descriptors=20000, random_state=seed),
                        tail=0.05,
                        normalization="power",
                    ),
                ),
            ],
            KernelSVDD(["linear", "linear"], nu=0.1),
            random_state=seed,
        ),
        "anomaly": lambda: Pipeline.from_config("anomaly"),
    }


def _domain(kind: str) -> str:
    return "inspection" if kind == "inspection" else "natural"


def select(out_dir, names=None, seed: int = 0, n_train: int = 50, n_test: int = 20) -> dict:
    """AUC of each candidate on every kind but the held-out one (one data seed): ``selection.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = [(k, z) for k, z in CASES if k != HELD_OUT]
    found = {}
    for name, make in candidates(seed).items():
        if names and name not in names:
            continue
        t0 = time.perf_counter()
        fitted, aucs = {}, {}
        for kind, size in cases:
            if _domain(kind) not in fitted:
                train = generate_kind(kind, seed, n_train)
                fitted[_domain(kind)] = make().fit([p.image for p in train])
            test = generate_kind(kind, seed + 1000, n_test, n_test, size if kind != "inspection" else "small")
            score = -fitted[_domain(kind)].decision_function([p.image for p in test])
            aucs[f"{kind}/{size}"] = float(roc_auc_score([p.anomalous for p in test], score))
        found[name] = {"auc": aucs, "mean": float(np.mean(list(aucs.values()))), "min": min(aucs.values())}
        log(
            f"{name}: mean AUC {found[name]['mean']:.3f}, min {found[name]['min']:.3f} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    _write_json(out / "selection.json", {"held_out": HELD_OUT, "seed": seed, "candidates": found})
    return found


def run_seed(seed: int, n_train: int, n_test: int, n_explain: int) -> dict:
    """One data seed: fit the shipped config per domain, score and explain every case."""
    t0 = time.perf_counter()
    fitted = {}
    rows = []
    examples = {}
    for kind, size in CASES:
        dom = _domain(kind)
        if dom not in fitted:
            train = generate_kind(kind, seed, n_train)
            fitted[dom] = Pipeline.from_config("anomaly").fit([p.image for p in train])
        pipe = fitted[dom]
        test = generate_kind(kind, seed + 1000, n_test, n_test, size if kind != "inspection" else "small")
        images = [p.image for p in test]
        y = np.array([p.anomalous for p in test])
        score = -pipe.decision_function(images)
        flagged = pipe.predict(images) == -1
        anomalous = [p for p in test if p.anomalous][:n_explain]
        explanations = pipe.explain([p.image for p in anomalous])
        maps = [e.heatmap for e in explanations]
        masks = [p.mask for p in anomalous]
        rma = relevance_mass_accuracy(maps, masks).values
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * BIN + 1, 4 * BIN + 1))
        dilated = [cv2.dilate(m.astype(np.uint8), k) > 0 for m in masks]
        rma_dilated = relevance_mass_accuracy(maps, dilated).values
        area = np.array([m.mean() for m in masks])
        area_dilated = np.array([m.mean() for m in dilated])
        conservation = max(
            abs(e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual - e.score) for e in explanations
        )
        rows.append(
            {
                "kind": kind,
                "size": size,
                "auc": float(roc_auc_score(y, score)),
                "fpr_normal": float(flagged[~y].mean()),
                "tpr_anomalous": float(flagged[y].mean()),
                "relevance_share": float(np.nanmean(rma)),
                "area_share": float(area.mean()),
                "ratio": float(np.nanmean(rma / area)),
                "relevance_share_dilated": float(np.nanmean(rma_dilated)),
                "area_share_dilated": float(area_dilated.mean()),
                "ratio_dilated": float(np.nanmean(rma_dilated / area_dilated)),
                "max_conservation_error": float(conservation),
                "n_explained": len(anomalous),
            }
        )
        examples[f"{kind}/{size}"] = (anomalous[0], maps[0], float(explanations[0].score))
        r = rows[-1]
        log(
            f"seed {seed} {kind}/{size}: AUC {r['auc']:.3f}, relevance on defect {r['relevance_share']:.3f} "
            f"(area {r['area_share']:.4f}, {r['ratio']:.1f}x), normal flagged {r['fpr_normal']:.2f}"
        )
    return {"seed": seed, "rows": rows, "seconds": time.perf_counter() - t0}, examples


def _panel_size(sample, side: int = 160) -> Sample:
    """The sample at ``side x side`` pixels (inspection parts are 96 x 96), for one figure."""
    if sample.image.shape == (side, side):
        return sample
    image = cv2.resize(sample.image, (side, side), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(sample.mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) > 0
    return Sample(image, mask, sample.kind, sample.size)


def _stat(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0}


def summarise_kinds(per_seed: list[dict]) -> list[dict]:
    """Mean and standard error over seeds of every number, per (kind, size)."""
    out = []
    for kind, size in CASES:
        rows = [r for s in per_seed for r in s["rows"] if r["kind"] == kind and r["size"] == size]
        keys = [k for k in rows[0] if k not in ("kind", "size", "n_explained", "max_conservation_error")]
        entry = {"kind": kind, "size": size, "held_out": kind == HELD_OUT, "n_seeds": len(rows)}
        entry.update({k: _stat([r[k] for r in rows]) for k in keys})
        entry["max_conservation_error"] = max(r["max_conservation_error"] for r in rows)
        out.append(entry)
    return out


def kinds_table(summary: list[dict]) -> str:
    """Markdown: kind, size, AUC, relevance share on the defect, area share, ratio, FPR (mean ± SE)."""
    lines = [
        "| kind | size | AUC | positive relevance on the defect | defect area | ratio "
        "| normal flagged (fpr 0.1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        name = f"**{e['kind']}** (held out)" if e["held_out"] else e["kind"]

        def f(key, digits=3, pct=False, e=e):
            m, s = e[key]["mean"], e[key]["se"]
            return f"{100 * m:.1f} ± {100 * s:.1f} %" if pct else f"{m:.{digits}f} ± {s:.{digits}f}"

        lines.append(
            f"| {name} | {e['size']} | {f('auc')} | {f('relevance_share', pct=True)} | "
            f"{100 * e['area_share']['mean']:.1f} % | {f('ratio', 1)}× | {f('fpr_normal', 2)} |"
        )
    return "\n".join(lines) + "\n"


def run_kinds(out_dir, seeds=(0, 1, 2), n_train: int = 50, n_test: int = 20, n_explain: int = 6) -> dict:
    """The kinds benchmark of the shipped config (see the module docstring)."""
    out = Path(out_dir)
    (out / "seeds").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per_seed, shown = [], None
    for seed in seeds:
        path = out / "seeds" / f"seed{seed}.json"
        if path.exists():
            per_seed.append(json.loads(path.read_text()))
            log(f"seed {seed}: reusing {path}")
            continue
        result, examples = run_seed(seed, n_train, n_test, n_explain)
        _write_json(path, result)
        per_seed.append(result)
        shown = shown or examples
    summary = summarise_kinds(per_seed)
    table = kinds_table(summary)
    fd, tmp = tempfile.mkstemp(prefix="table.md.", dir=out)
    with os.fdopen(fd, "w") as fh:
        fh.write(table)
    os.replace(tmp, out / "table.md")
    if shown is not None:  # examples of the first seed computed here (a run reusing every seed keeps its PNG)
        labels = list(shown)
        pictures.save_png(
            out / "kinds.png",
            figure(
                [_panel_size(shown[k][0]) for k in labels],
                [cv2.resize(shown[k][1], (160, 160), interpolation=cv2.INTER_NEAREST) for k in labels],
                [shown[k][2] for k in labels],
            ),
        )
    metrics = {
        "settings": {
            "config": "anomaly (Pipeline.from_config)",
            "held_out": HELD_OUT,
            "seeds": list(seeds),
            "n_train": n_train,
            "n_test_normal": n_test,
            "n_test_anomalous": n_test,
            "n_explained_per_case": n_explain,
            "dilation_px": 2 * BIN,
            "relevance_share": "relevance mass accuracy (positive relevance), bowlrp.evaluation.localisation",
        },
        "summary": summary,
        "seconds_per_seed": [s["seconds"] for s in per_seed],
        "seconds_total": time.perf_counter() - t0,
    }
    _write_json(out / "metrics.json", metrics)
    print(table, flush=True)
    log(f"done in {metrics['seconds_total']:.0f} s; wrote {out / 'metrics.json'}, table.md, kinds.png")
    return metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/anomaly")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-train", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=20, help="normal and anomalous test images per case")
    ap.add_argument("--n-explain", type=int, default=6, help="anomalous images explained per case")
    ap.add_argument(
        "--select",
        nargs="*",
        default=None,
        metavar="NAME",
        help="compare candidate detectors on the non-held-out kinds (all, or those named)",
    )
    ap.add_argument("--inspection-details", action="store_true", help="the SVDD inspection experiment")
    ap.add_argument("--nu", type=float, default=0.1)
    ap.add_argument("--n-jobs", type=int, default=None)
    args = ap.parse_args(argv)
    if args.inspection_details:
        run(
            args.out,
            n_train=80 if args.n_train == 50 else args.n_train,
            nu=args.nu,
            seed=args.seeds[0],
            n_jobs=args.n_jobs,
        )
    elif args.select is not None:
        select(args.out, args.select, args.seeds[0], args.n_train, args.n_test)
    else:
        run_kinds(args.out, tuple(args.seeds), args.n_train, args.n_test, args.n_explain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
