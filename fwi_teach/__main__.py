"""``python -m fwi_teach``: the ``fwi-teach`` command line (see :mod:`fwi_teach.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
