"""``python -m bowlrp PROGRAM ...``: the ``bowlrp`` command (:mod:`bowlrp.cli.main`)."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
