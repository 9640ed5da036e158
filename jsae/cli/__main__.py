"""``python -m jsae.cli``: the ``jsae`` command."""

import sys

from jsae.cli import main

sys.exit(main())
