"""``python -m bowlrp.explain``: see :mod:`bowlrp.cli.explain`."""

import sys

from bowlrp.cli.explain import main

if __name__ == "__main__":
    sys.exit(main())
