"""``bowlrp``: one command, one sub-command per program.

    bowlrp explain --image x.jpg --model voc_horse.pkl
    bowlrp train --config voc_fisher --voc-root VOC2007 -o voc.pkl
    bowlrp evaluate --model m.pkl --images test/ --out aopc/
    bowlrp spray --heatmaps heatmaps/ --out report/
    python -m bowlrp explain ...            (the same)

Each sub-command is the program of the same name (``bowlrp-explain``,
``python -m bowlrp.explain``, ...), with the same options and the same outputs.
Only the chosen program's module is imported, so ``bowlrp --help`` and
``bowlrp explain --help`` answer without loading the numerical stack.
"""

from __future__ import annotations

import difflib
import importlib
import sys

from .._version import __version__

#: sub-command -> (module with ``main(argv)``, one line for the listing)
PROGRAMS: dict[str, tuple[str, str]] = {
    "explain": ("bowlrp.cli.explain", "explain images pixel by pixel (heatmaps, overlays, records)"),
    "train": ("bowlrp.cli.train", "train a model from a config and a data set (VOC or folders)"),
    "evaluate": ("bowlrp.cli.evaluate", "measure explanations: region perturbation, AOPC, baselines"),
    "spray": ("bowlrp.cli.spray", "Spectral Relevance Analysis over many heatmaps: strategies per class"),
}


def usage() -> str:
    """The text of ``bowlrp --help``: the programs and how to get help on each."""
    width = max(len(name) for name in PROGRAMS)
    lines = [
        "usage: bowlrp {" + ",".join(PROGRAMS) + "} [options]",
        "",
        "Bag-of-Words and Fisher-vector classifiers explained pixel by pixel with LRP.",
        "",
        "programs:",
        *(f"  {name:<{width}}  {text}" for name, (_, text) in PROGRAMS.items()),
        "",
        "options:",
        "  -h, --help     show this message and exit",
        "  --version      show the version and exit",
        "",
        "'bowlrp PROGRAM --help' describes a program's options; 'bowlrp-PROGRAM' and",
        "'python -m bowlrp.PROGRAM' are the same programs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run ``bowlrp PROGRAM [options]``; returns the program's exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        if len(args) > 1 and args[0] == "help" and args[1] in PROGRAMS:  # bowlrp help explain
            return main([args[1], "--help"])
        (sys.stdout if args else sys.stderr).write(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"bowlrp {__version__}")
        return 0
    name = args[0]
    if name not in PROGRAMS:
        close = difflib.get_close_matches(name, PROGRAMS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        print(
            f"bowlrp: error: unknown program {name!r}; {hint}programs are {', '.join(PROGRAMS)} "
            "(see bowlrp --help)",
            file=sys.stderr,
        )
        return 2
    # imported here, not at the top: only the chosen program's dependencies load (fast --help)
    program = importlib.import_module(PROGRAMS[name][0])
    return program.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
