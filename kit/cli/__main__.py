"""``python -m kit.cli``: the ``kit`` command."""

import sys

from . import main

sys.exit(main())
