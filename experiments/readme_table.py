"""The README's polygons results table, generated from a ``metrics.json``.

    python experiments/readme_table.py                     # rewrite README.md from the snapshot
    python experiments/readme_table.py --check             # exit 1 if README.md is out of date
    python experiments/readme_table.py --metrics experiments/results/polygons/metrics.json

The snapshot ``experiments/polygons_metrics.json`` is the ``metrics.json`` of
the run the README reports, ``experiments/polygons_timings.json`` its
``timings.json`` (copy a new run's files there, then run this). The schema is
described in docs/polygons_experiment.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "experiments" / "polygons_metrics.json"
TIMINGS = ROOT / "experiments" / "polygons_timings.json"
BEGIN = "<!-- polygons-results"
END = "<!-- /polygons-results -->"
TITLE = {"hik": "HIK + MKL", "chi2": "exp-χ² + MKL"}


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _num(x, fmt="+.3f") -> str:
    return "—" if x is None else format(x, fmt)


def _pm(mean, se, fmt=".3f") -> str:
    if mean is None:
        return "—"
    return f"{mean:{fmt}} ± {se:.3f}" if se is not None else f"{mean:{fmt}}"


def verdict(diff: dict) -> str:
    """'better' / 'worse' when the paired difference is over two standard errors from 0, else 'tie'."""
    if diff["stderr"] is None:
        return "tie"
    if diff["mean"] > 2 * diff["stderr"]:
        return "better"
    if diff["mean"] < -2 * diff["stderr"]:
        return "worse"
    return "tie"


def _faithfulness(lines, models, names) -> None:
    perts = [
        p
        for p in ("uniform", "blur")
        if any(p in (models[n].get("region_perturbation") or {}) for n in names)
    ]
    if not perts:
        return
    settings = None
    lines += [
        "",
        "Faithfulness (region perturbation, most relevant 9×9 blocks first; AOPC ± standard "
        "error over tiles; Δ = the paired per-tile difference ± its standard error, "
        "positive = more faithful than occlusion / random):",
        "",
    ]
    head = (
        "| model | method | "
        + " | ".join(f"AOPC {p} | Δ occlusion ({p}) | Δ random ({p})" for p in perts)
        + " |"
    )
    lines += [head, "|---|---|" + "---|---|---|" * len(perts)]
    for n in names:
        rp = models[n].get("region_perturbation") or {}
        methods = list(rp[perts[0]]["methods"])
        for m in methods:
            cells = []
            for p in perts:
                a = rp[p]["methods"][m]
                paired = rp[p]["paired_differences"].get(m, {})
                cells.append(_pm(a["aopc"], a["stderr"]))
                for ref in ("occlusion", "random"):
                    d = paired.get(ref)
                    cells.append(f"{d['mean']:+.3f} ± {d['stderr']:.3f}" if d else "—")
            lines.append(f"| {TITLE[n]} | {m} | " + " | ".join(cells) + " |")
        settings = settings or rp
    if "chi2" in names and models["chi2"].get("region_perturbation"):
        rp = models["chi2"]["region_perturbation"]
        parts = []
        for p in perts:
            paired = rp[p]["paired_differences"]
            lrp = [m for m in paired if m not in ("occlusion", "random")]
            best = max(lrp, key=lambda m: rp[p]["methods"][m]["aopc"])
            d = paired[best]["occlusion"]
            word = {
                "better": "beats occlusion",
                "worse": "is less faithful than occlusion",
                "tie": "does not differ from occlusion by more than two standard errors",
            }[verdict(d)]
            parts.append(
                f"under {p} perturbation the best LRP variant ({best}) {word} "
                f"(Δ = {d['mean']:+.3f} ± {d['stderr']:.3f})"
            )
        lines += ["", "**Does LRP beat occlusion on the χ² model?** " + "; ".join(parts) + "."]


def _taylor(lines, models) -> None:
    t = models.get("chi2", {}).get("taylor")
    if not t:
        return
    lines += [
        "",
        "Taylor-type rules of the χ² model on the same tiles (residual = "
        "|f(x) − f(x̃) − Σ_d R_d| / |f(x)|; root distance ‖x − x̃‖):",
        "",
        "| rule | residual median | residual p90 | root distance median |",
        "|---|---|---|---|",
    ]
    for m, d in t.items():
        res, dist = d["relative_residual"], d["root_distance"]
        lines.append(
            f"| {m} | {_num(res['median'], '.2e')} | {_num(res['p90'], '.2e')} | "
            f"{_num(dist['median'], '.4f')} |"
        )


def render(metrics: dict, timings: dict | None = None) -> str:
    """Markdown: how the run was made, accuracy and localisation per model, faithfulness."""
    models = metrics["models"]
    names = [n for n in ("hik", "chi2") if n in models]
    data = metrics["data"]
    when = ""
    if timings:
        machine = timings.get("machine", {})
        when = (
            f"; {timings['seconds']['total'] / 60:.1f} min on {machine.get('cores', '?')} "
            f"cores, Python {machine.get('python', '?')}"
        )
    lines = [
        f"Results of one run of `make polygons-experiment` ({data['train_tiles']} training tiles, "
        f"{data['heldout_tiles']} held-out tiles cropped every {data['heldout_stride']} px from "
        f"{data['heldout_scenes']} scenes, seed {metrics['settings']['seed']}{when}; every number "
        "is in `experiments/polygons_metrics.json`):",
        "",
        "| | " + " | ".join(TITLE[n] for n in names) + " | paper |",
        "|---|" + "---|" * len(names) + "---|",
    ]

    def row(label, values, paper=""):
        lines.append(f"| {label} | " + " | ".join(values) + f" | {paper} |")

    def acc(n):
        a = models[n]["accuracy"]
        extra = f" (± {100 * a['stderr_scenes']:.1f} over scenes)" if a.get("stderr_scenes") else ""
        return f"{_pct(a['value'])} ± {100 * a['stderr']:.1f}{extra}"

    row(
        f"held-out tile accuracy ({data['heldout_tiles']} tiles)",
        [acc(n) for n in names],
        "≈ 97 %, χ² ≈ 1.6 points better",
    )
    loc = {n: models[n]["localisation"] for n in names}
    row(
        "positive relevance on polygons (dilated; share of the area "
        f"{_pct(loc[names[0]]['dilated_polygon_area_share'])})",
        [_pct(loc[n]["positive_share_on_polygons"]) for n in names],
    )
    row(
        "mean relevance per pixel: polygons / round / background",
        [
            " / ".join(
                _num(loc[n][k])
                for k in (
                    "mean_relevance_on_polygons",
                    "mean_relevance_on_round",
                    "mean_relevance_on_background",
                )
            )
            for n in names
        ],
        "positive / weakly negative / ≈ 0",
    )
    row(
        "polygons with positive mean relevance",
        [f"{_pct(loc[n]['fraction_polygons_positive'])} of {loc[n]['n_polygons']}" for n in names],
    )
    row(
        "round shapes with negative mean relevance",
        [f"{_pct(loc[n]['fraction_round_negative'])} of {loc[n]['n_round']}" for n in names],
    )
    _faithfulness(lines, models, names)
    _taylor(lines, models)
    return "\n".join(lines)


def replace_block(readme: str, table: str) -> str:
    start = readme.index(BEGIN)
    start = readme.index("\n", start) + 1
    end = readme.index(END)
    return readme[:start] + table + "\n" + readme[end:]


def render_files(metrics_path, timings_path=None) -> str:
    metrics = json.loads(Path(metrics_path).read_text())
    timings = None
    if timings_path is not None and Path(timings_path).is_file():
        timings = json.loads(Path(timings_path).read_text())
    return render(metrics, timings)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", default=str(SNAPSHOT))
    ap.add_argument(
        "--timings",
        default=None,
        help=f"timings.json (default: {TIMINGS.name} beside the snapshot, if --metrics is the snapshot)",
    )
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    timings = args.timings or (
        TIMINGS if Path(args.metrics) == SNAPSHOT else Path(args.metrics).with_name("timings.json")
    )
    readme = Path(args.readme).read_text()
    updated = replace_block(readme, render_files(args.metrics, timings))
    if args.check:
        if updated != readme:
            print(f"{args.readme} is out of date: run python experiments/readme_table.py", file=sys.stderr)
            return 1
        return 0
    Path(args.readme).write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
