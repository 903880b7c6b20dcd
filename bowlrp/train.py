"""``python -m bowlrp.train``: the ``bowlrp-train`` command (:mod:`bowlrp.cli.train`)."""

from .cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
