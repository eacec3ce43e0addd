"""``python -m supermel``: the command line (see :mod:`supermel.cli`)."""

from .cli import main

raise SystemExit(main())
