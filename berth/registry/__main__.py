"""Entry point for ``python -m berth.registry``."""

import sys

from berth.registry.cli import main

sys.exit(main())
