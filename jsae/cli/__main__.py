"""``python -m jsae.cli``: the ``jsae`` command."""

import sys

from jsae.cli.commands import main

sys.exit(main())
