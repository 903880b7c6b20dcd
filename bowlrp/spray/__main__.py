"""``python -m bowlrp.spray``: the ``bowlrp spray`` program (:mod:`bowlrp.cli.spray`)."""

import sys

from ..cli.spray import main

if __name__ == "__main__":
    sys.exit(main())
