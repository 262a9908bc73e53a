"""``python -m peaknet_serve.cli``: the ``peaknet-serve`` command without its script."""

import sys

from peaknet_serve.cli import main

sys.exit(main())
