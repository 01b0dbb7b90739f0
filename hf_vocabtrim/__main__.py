"""``python -m hf_vocabtrim``: the ``vocabtrim`` command line."""

import sys

from .cli import main

sys.exit(main())
