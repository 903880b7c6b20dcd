"""``python -m bowlrp.train``: the ``bowlrp-train`` command (:mod:`bowlrp.cli.train`)."""
from bowlrp.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
