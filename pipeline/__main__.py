"""``python -m pipeline``: see :mod:`pipeline.cli`."""
from .cli import main

raise SystemExit(main())
