"""``python -m hub``: see :mod:`hub.cli`."""

import sys

from hub.cli import main

sys.exit(main())
