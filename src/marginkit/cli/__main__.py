"""``python -m marginkit.cli``: the same as the ``marginkit`` console script."""

import sys

from marginkit.cli import main

sys.exit(main())
