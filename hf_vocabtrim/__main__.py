"""``python -m hf_vocabtrim``: the ``vocabtrim`` command line."""

import sys

from .commands import main

sys.exit(main())
