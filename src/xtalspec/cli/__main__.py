"""``python -m xtalspec.cli``: the same as the ``xtalspec`` console script."""

import sys

from .main import main

sys.exit(main())
