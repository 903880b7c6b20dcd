"""The README's polygons results table, generated from a ``metrics.json``.

    python experiments/readme_table.py                     # rewrite README.md from the snapshot
    python experiments/readme_table.py --check             # exit 1 if README.md is out of date
    python experiments/readme_table.py --metrics experiments/results/polygons/metrics.json

The snapshot ``experiments/polygons_metrics.json`` is the ``metrics.json`` of
the run the README reports (copy a new run's file there, then run this).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "experiments" / "polygons_metrics.json"
BEGIN = "<!-- polygons-results"
END = "<!-- /polygons-results -->"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _num(x, fmt="+.3f") -> str:
    return "—" if x is None else format(x, fmt)


def render(metrics: dict) -> str:
    """Markdown: how the run was made, then one column per model."""
    models = metrics["models"]
    names = [n for n in ("hik", "chi2") if n in models]
    title = {"hik": "HIK + MKL", "chi2": "exp-χ² + MKL"}
    data = metrics["data"]
    machine = metrics.get("machine", {})
    lines = [
        f"Results of one run of `make polygons-experiment` ({data['train_tiles']} training tiles, "
        f"{data['heldout_tiles']} held-out tiles, seed {data['seed']}; "
        f"{metrics['seconds_total'] / 60:.1f} min on {machine.get('cores', '?')} cores, "
        f"Python {machine.get('python', '?')}; every number is in `metrics.json`):",
        "",
        "| | " + " | ".join(title[n] for n in names) + " | paper |",
        "|---|" + "---|" * len(names) + "---|",
    ]

    def row(label, values, paper=""):
        lines.append(f"| {label} | " + " | ".join(values) + f" | {paper} |")

    row(f"held-out tile accuracy ({data['heldout_tiles']} tiles)",
        [f"{_pct(models[n]['tile_accuracy'])} ± {100 * models[n]['tile_accuracy_stderr']:.1f}"
         for n in names], "≈ 97 %, χ² ≈ 1.6 points better")
    loc = {n: models[n]["localisation"] for n in names}
    row("positive relevance on polygons (dilated; share of the area "
        f"{_pct(loc[names[0]]['dilated_polygon_area_share'])})",
        [_pct(loc[n]["positive_share_on_polygons"]) for n in names])
    row("mean relevance per pixel: polygons / round / background",
        [" / ".join(_num(loc[n][k]) for k in ("mean_relevance_on_polygons", "mean_relevance_on_round",
                                               "mean_relevance_on_background")) for n in names],
        "positive / weakly negative / ≈ 0")
    row("polygons with positive mean relevance",
        [f"{_pct(loc[n]['fraction_polygons_positive'])} of {loc[n]['n_polygons']}" for n in names])
    row("round shapes with negative mean relevance",
        [f"{_pct(loc[n]['fraction_round_negative'])} of {loc[n]['n_round']}" for n in names])
    perts = sorted({p for n in names for p in (models[n].get("region_perturbation_aopc") or {})})
    for pert in perts:
        methods = sorted({m for n in names for m in (models[n]["region_perturbation_aopc"] or {})
                          .get(pert, {})})
        for m in methods:
            row(f"AOPC, MoRF 9×9 {pert}: {m}",
                [(lambda d: f"{d['aopc']:.2f} ± {d['aopc_stderr']:.2f}" if d else "—")(
                    (models[n]["region_perturbation_aopc"] or {}).get(pert, {}).get(m)) for n in names])
    return "\n".join(lines)


def replace_block(readme: str, table: str) -> str:
    start = readme.index(BEGIN)
    start = readme.index("\n", start) + 1
    end = readme.index(END)
    return readme[:start] + table + "\n" + readme[end:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", default=str(SNAPSHOT))
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    readme = Path(args.readme).read_text()
    updated = replace_block(readme, render(json.loads(Path(args.metrics).read_text())))
    if args.check:
        if updated != readme:
            print(f"{args.readme} is out of date: run python experiments/readme_table.py", file=sys.stderr)
            return 1
        return 0
    Path(args.readme).write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
