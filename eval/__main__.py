"""``python -m eval SUITE --help``: see :mod:`eval.cli`."""
import sys

from .cli import main

sys.exit(main())
