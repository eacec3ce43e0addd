"""``python -m supermel.bench``: the same as ``supermel bench``."""

from .cli import main

raise SystemExit(main())
