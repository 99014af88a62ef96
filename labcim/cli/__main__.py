"""``python -m labcim.cli``: the same as the ``labcim`` console script."""

import sys

from labcim.cli import main

sys.exit(main())
