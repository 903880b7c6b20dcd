"""``python -m bowlrp.explain``: see :mod:`bowlrp.cli.explain`."""

import sys

from .cli.explain import main

if __name__ == "__main__":
    sys.exit(main())
