"""``python -m minippo`` is the same as the ``minippo`` console script."""
import sys

from minippo.cli import main

sys.exit(main())
