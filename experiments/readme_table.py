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

import numpy as np

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


def _share(s: dict | None) -> str:
    """A share ``{"mean", "stderr"}`` in per cent, ``—`` when there is none."""
    if not s:
        return "—"
    if s["stderr"] is None:
        return f"{100 * s['mean']:.1f} %"
    return f"{100 * s['mean']:.1f} ± {100 * s['stderr']:.1f} %"


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
        "positive = more faithful than occlusion / random / the model's default rule; "
        "method names: step-1 rule, `+neon` = the `Neon` descriptor rule, `+contribution` = the "
        "`Contribution` pixel rule (per dimension after `+neon`), `+siftbins` = `SIFTBins`, else `Flat`):",
        "",
    ]
    with_default = any(
        "default" in d
        for n in names
        for p in perts
        for d in models[n]["region_perturbation"][p]["paired_differences"].values()
    )
    refs = ("occlusion", "random", "default") if with_default else ("occlusion", "random")
    head = (
        "| model | method | "
        + " | ".join(f"AOPC {p} | " + " | ".join(f"Δ {r} ({p})" for r in refs) for p in perts)
        + " |"
    )
    lines += [head, "|---|---|" + "---|" * ((1 + len(refs)) * len(perts))]
    for n in names:
        rp = models[n].get("region_perturbation") or {}
        methods = list(rp[perts[0]]["methods"])
        for m in methods:
            cells = []
            for p in perts:
                a = rp[p]["methods"][m]
                paired = rp[p]["paired_differences"].get(m, {})
                cells.append(_pm(a["aopc"], a["stderr"]))
                for ref in refs:
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


#: A rule replaces the default only if it is better by this many paired standard errors under
#: at least one perturbation, not worse by ``WORSE_SE`` under any, and costs at most
#: ``MAX_COST`` times the default per tile (issue 27).
BETTER_SE, WORSE_SE, MAX_COST = 2.0, 1.0, 1.5


def decide_default(model: dict, cost: dict | None) -> dict:
    """Which rule the measurements make the default of one model.

    A candidate qualifies when, against the current default (paired per-tile
    differences of AOPC), ``Δ >= BETTER_SE · se`` under at least one perturbation,
    ``Δ > -WORSE_SE · se`` under every one, and its median explain time per tile is at
    most ``MAX_COST`` times the default's (``cost``: the ``explain_cost`` block of
    timings.json; without it no rule qualifies). Of the qualifying rules the one with
    the largest mean Δ / se over the perturbations wins.

    Returns ``{"default", "choice", "reasons": {method: why it does or does not qualify}}``.
    """
    rp = model.get("region_perturbation") or {}
    default = model.get("default_method")
    perts = list(rp)
    reasons, scores = {}, {}
    if not default or not perts:
        return {"default": default, "choice": default, "reasons": reasons}
    for m in rp[perts[0]]["paired_differences"]:
        if m in ("occlusion", "random") or m == default:
            continue
        z = {}
        for p in perts:
            d = rp[p]["paired_differences"][m].get("default")
            z[p] = None if not d or not d["stderr"] else d["mean"] / d["stderr"]
        ratio = ((cost or {}).get(m) or {}).get("median_ratio_to_default")
        if any(v is None for v in z.values()):
            why = "no paired standard error"
        elif not any(v >= BETTER_SE for v in z.values()):
            why = f"not better by {BETTER_SE:g} SE under any perturbation"
        elif any(v <= -WORSE_SE for v in z.values()):
            why = f"worse by {WORSE_SE:g} SE or more under one perturbation"
        elif ratio is None:
            why = "no cost measured"
        elif ratio > MAX_COST:
            why = f"costs {ratio:.2f}× the default (> {MAX_COST:g}×)"
        else:
            why = "qualifies"
            scores[m] = float(np.mean(list(z.values())))
        reasons[m] = {"z": z, "cost_ratio": ratio, "why": why}
    choice = max(scores, key=scores.get) if scores else default
    return {"default": default, "choice": choice, "reasons": reasons}


def _choice(lines, models, names, timings) -> None:
    """Per model: every rule against the default (paired, in SE), localisation, cost, verdict."""
    cost_all = (timings or {}).get("explain_cost") or {}
    shown = [n for n in names if models[n].get("default_method") and models[n].get("region_perturbation")]
    if not shown:
        return
    lines += [
        "",
        "Choosing the default rule (Δ / SE = the paired difference to the current default over its "
        f"standard error; a rule replaces the default only if Δ / SE ≥ {BETTER_SE:g} under one "
        f"perturbation, > −{WORSE_SE:g} under the other, and it costs ≤ {MAX_COST:g}× the default; "
        "positive share = share of the positive relevance on the dilated polygons of the evaluated "
        "tiles, mean ± standard error; cost = median over tiles of explain time / the default's "
        "(and / the forward pass), best of two calls, from `timings.json`):",
        "",
        "| model | method | Δ / SE uniform | Δ / SE blur | positive share on polygons | cost / default | "
        "cost / forward | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        if n not in shown:
            continue
        model = models[n]
        cost = cost_all.get(n)
        decision = decide_default(model, cost)
        loc = (model.get("tile_localisation") or {}).get("methods") or {}
        perts = list(model["region_perturbation"])
        for m in model["region_perturbation"][perts[0]]["methods"]:
            if m in ("occlusion", "random"):
                continue
            r = decision["reasons"].get(m)
            zs = [
                "—" if r is None or r["z"].get(p) is None else f"{r['z'][p]:+.1f}"
                for p in ("uniform", "blur")
            ]
            share = loc.get(m)
            c = (cost or {}).get(m) or {}
            verdict = "current default" if m == decision["default"] else (r["why"] if r else "—")
            lines.append(
                f"| {TITLE[n]} | {m} | {zs[0]} | {zs[1]} | "
                f"{_share(share)} | {_num(c.get('median_ratio_to_default'), '.2f')} | "
                f"{_num(c.get('median_ratio_to_forward'), '.2f')} | {verdict} |"
            )
        for occ in [k for k in loc if k.startswith("occlusion-")]:
            lines.append(f"| {TITLE[n]} | {occ} | — | — | {_share(loc[occ])} | — | — | reference |")
    areas = [(models[n].get("tile_localisation") or {}).get("area_share") for n in shown]
    if areas and areas[0] is not None:
        lines += ["", f"(The dilated polygons cover {_pct(areas[0])} of the evaluated tiles' area.)"]
    lines.append("")
    for n in shown:
        decision = decide_default(models[n], cost_all.get(n))
        if decision["choice"] == decision["default"]:
            lines.append(
                f"- **{TITLE[n]}: the default stays `{decision['default']}`**: no rule meets the bar."
            )
        else:
            r = decision["reasons"][decision["choice"]]
            lines.append(
                f"- **{TITLE[n]}: the measurements make `{decision['choice']}` the default** (instead of "
                f"`{decision['default']}`: Δ / SE "
                + ", ".join(f"{p} {v:+.1f}" for p, v in r["z"].items())
                + f", cost {r['cost_ratio']:.2f}× the default)."
            )


def _targets(lines, models, names) -> None:
    """Issue 27's bar: best rule >= occlusion - 1 paired SE (uniform), within 10 % of occlusion (blur)."""
    rows = []
    for n in names:
        rp = models[n].get("region_perturbation") or {}
        if "uniform" in rp:
            paired = rp["uniform"]["paired_differences"]
            lrp = [m for m in paired if m not in ("occlusion", "random")]
            best = max(lrp, key=lambda m: paired[m]["occlusion"]["mean"])
            d = paired[best]["occlusion"]
            met = d["stderr"] is not None and d["mean"] >= -d["stderr"]
            rows.append(
                f"{TITLE[n]}, uniform: best `{best}` Δ occlusion {d['mean']:+.3f} ± {d['stderr']:.3f} "
                f"({'met' if met else 'missed'}: ≥ −1 SE)"
            )
        if "blur" in rp:
            methods = rp["blur"]["methods"]
            lrp = [m for m in methods if m not in ("occlusion", "random")]
            best = max(lrp, key=lambda m: methods[m]["aopc"])
            ratio = methods[best]["aopc"] / methods["occlusion"]["aopc"]
            rows.append(
                f"{TITLE[n]}, blur: best `{best}` AOPC {methods[best]['aopc']:.3f} = {100 * ratio:.0f} % "
                f"of occlusion's {methods['occlusion']['aopc']:.3f} "
                f"({'met' if ratio >= 0.9 else 'missed'}: ≥ 90 %)"
            )
    if rows:
        lines += ["", "Issue 27's faithfulness targets: " + "; ".join(rows) + "."]


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
        if "+" in m:  # the same step 1 with another pixel rule: the same residual and root
            continue
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
        if timings.get("note"):  # how the run was made, when it was not one plain command
            when += f" ({timings['note']})"
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
    _choice(lines, models, names, timings)
    _targets(lines, models, names)
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
